"""Every table, imported in one place so Alembic and the schema test see the whole metadata."""

from aegis.database.core import Base
from aegis.flags import models as flags_models

metadata = Base.metadata

__all__ = ["flags_models", "metadata"]
