"""Alembic, driven from code: the only way Aegis creates or changes its schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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


class SchemaNotCurrent(AegisError):
    """The database is not at the revision(s) this Aegis expects; only ``aegis db upgrade`` (or a
    command that writes) migrates it."""

    code = "schema_not_current"


def upgrade(engine: Engine, revision: str = "heads") -> None:
    _refuse_foreign(engine)
    _migrate(command.upgrade, engine, revision)


def _refuse_foreign(engine: Engine, *, doing: str = "migrate") -> None:
    """Never add Aegis's tables to a database that holds other tables and no Aegis schema: a
    DATABASE_URL pointing at some other application's database is a mistake to stop, not to
    migrate."""
    names = set(inspect(engine).get_table_names())
    if names and "alembic_version" not in names:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise ForeignDatabase(
            f"the database holds tables that are not Aegis's ({shown}) and no Aegis schema; "
            f"refusing to {doing} it: give Aegis an empty database of its own"
        )


def current(engine: Engine) -> list[str]:
    """The revision(s) the database is at, sorted; empty when it holds no Aegis schema."""
    with engine.connect() as conn:
        return sorted(MigrationContext.configure(conn).get_current_heads())


def known_heads() -> list[str]:
    """The newest revision(s) this version of Aegis migrates to, sorted."""
    return sorted(_scripts().get_heads())


def require_current(engine: Engine) -> None:
    """Raise :class:`SchemaNotCurrent` unless the database is at :func:`known_heads`; read only,
    for commands that must not change the schema (they say to run ``aegis db upgrade``)."""
    from aegis.database.core import redacted

    where = redacted(engine.url.render_as_string(hide_password=False))
    _refuse_foreign(engine, doing="read")
    at, expected = current(engine), known_heads()
    if at == expected:
        return
    if not at:
        raise SchemaNotCurrent(
            f"the database at {where} holds no Aegis schema: run `aegis db upgrade` first"
        )
    scripts = _scripts()
    if any(_unknown(scripts, revision) for revision in at):
        raise SchemaNotCurrent(
            f"the database at {where} is at revision {', '.join(at)}, newer than this Aegis "
            f"knows ({', '.join(expected)}): use the Aegis version that migrated it"
        )
    raise SchemaNotCurrent(
        f"the database at {where} is at revision {', '.join(at)} but this Aegis expects "
        f"{', '.join(expected)}: run `aegis db upgrade`"
    )


def _scripts() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def _unknown(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.get_revision(revision) is None
    except CommandError:
        return True


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
