"""Every table, imported in one place so Alembic and the schema test see the whole metadata."""

from aegis.actions import models as actions_models
from aegis.audit import models as audit_models
from aegis.auth import models as auth_models
from aegis.database.core import Base
from aegis.executor import models as executor_models
from aegis.flags import models as flags_models
from aegis.incidents import models as incidents_models
from aegis.policy import models as policy_models
from aegis.registry import models as registry_models
from aegis.safety import models as safety_models

metadata = Base.metadata

__all__ = [
    "actions_models",
    "audit_models",
    "auth_models",
    "executor_models",
    "flags_models",
    "incidents_models",
    "metadata",
    "policy_models",
    "registry_models",
    "safety_models",
]
