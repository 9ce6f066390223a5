"""Alembic, driven from code: the only way Aegis creates or changes its schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import Engine, inspect

from aegis.core.errors import AegisError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key held by a migration (``migrations/env.py``): the bytes "AEGISMIG" as
# a signed 64-bit integer.
MIGRATION_LOCK_KEY = int.from_bytes(b"AEGISMIG", "big", signed=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


class UnknownRevision(AegisError):
    code = "unknown_revision"


class ForeignDatabase(AegisError):
    code = "foreign_database"


def upgrade(engine: Engine, revision: str = "heads") -> None:
    _refuse_foreign(engine)
    _migrate(command.upgrade, engine, revision)


def _refuse_foreign(engine: Engine) -> None:
    """Never add Aegis's tables to a database that holds other tables and no Aegis schema: a
    DATABASE_URL pointing at some other application's database is a mistake to stop, not to
    migrate."""
    names = set(inspect(engine).get_table_names())
    if names and "alembic_version" not in names:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise ForeignDatabase(
            f"the database holds tables that are not Aegis's ({shown}) and no Aegis schema; "
            "refusing to migrate it: give Aegis an empty database of its own"
        )


def current(engine: Engine) -> list[str]:
    """The revision(s) the database is at, sorted; empty when it holds no Aegis schema."""
    with engine.connect() as conn:
        return sorted(MigrationContext.configure(conn).get_current_heads())


def downgrade(engine: Engine, revision: str) -> None:
    _migrate(command.downgrade, engine, revision)


def _migrate(step: Callable[[Config, str], None], engine: Engine, revision: str) -> None:
    if not revision.strip():
        raise UnknownRevision("name a revision: heads, base, a revision id or a step such as -1")
    try:
        step(alembic_config(engine), revision)
    except CommandError as exc:  # Alembic's own one-line reason (unknown or ambiguous revision)
        lines = str(exc).strip().splitlines() or [""]
        raise UnknownRevision(f"cannot migrate to {revision[:80]!r}: {lines[0][:200]}") from None
