"""Alembic environment: the engine is handed in by ``aegis.database.migrate``.

Who migrates: the backend at start-up, ``aegis up``, ``aegis db upgrade`` (the Compose and Helm
migration job), a restore, and every ``aegis`` command that writes, before it writes. The engine
and the executor never migrate, and a command that only reads refuses a schema that is not
current instead (``aegis.cli.runtime.open_current_database``). So backend replicas and one-off
commands starting together on a new database would race to create the same tables. On
PostgreSQL the migration transaction first takes an advisory lock
(:data:`aegis.database.migrate.MIGRATION_LOCK_KEY`): one process migrates, the others wait for it
and then find the schema current. On SQLite the transaction begins with ``BEGIN IMMEDIATE``
(``aegis.database.core``), which serialises them the same way.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from aegis.database.migrate import MIGRATION_LOCK_KEY
from aegis.database.models import metadata

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
