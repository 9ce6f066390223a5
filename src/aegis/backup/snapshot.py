"""A consistent, read-only view of the source database for the whole length of a backup.

PostgreSQL: one ``REPEATABLE READ, READ ONLY`` transaction; every table is read from the same
snapshot while writers carry on. SQLite (WAL): one deferred read transaction, whose snapshot is
fixed by its first read; writers are not blocked (Aegis's own connections take ``BEGIN
IMMEDIATE``, which a reader does not conflict with in WAL mode). Rows are streamed
(``yield_per``: a server-side cursor on PostgreSQL), never loaded a whole table at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Table, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from aegis.audit import service as audit_service
from aegis.backup import codec
from aegis.backup.errors import BackupError
from aegis.database.core import redacted
from aegis.database.migrate import MIGRATIONS_DIR
from aegis.database.models import metadata

YIELD_PER = 1000
VERSION_TABLE = "alembic_version"


def known_heads() -> set[str]:
    """The newest revision(s) this version of Aegis migrates to."""
    return set(script_directory().get_heads())


def script_directory() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def _sqlite_connect(dbapi_conn: Any, _: Any) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")  # deferred: a read snapshot, writers not blocked


@contextmanager
def snapshot(url: str) -> Iterator[Connection]:
    """A connection inside one read-only snapshot transaction of the database at ``url``."""
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        path = parsed.database or ""
        if path in {"", ":memory:"} or not Path(path).exists():
            raise BackupError(f"source database {redacted(url)} does not exist")
        engine = create_engine(url, poolclass=NullPool)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            if not sqlite:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                if not sqlite:
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn
    finally:
        engine.dispose()


def check_source(conn: Connection) -> list[str]:
    """The source's Alembic revision(s); refuse a schema the backup would not cover exactly."""
    names = set(inspect(conn).get_table_names())
    if VERSION_TABLE not in names:
        raise BackupError(
            "the source database has no Aegis schema (no alembic_version table): "
            "run `aegis db upgrade` first"
        )
    stored = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
    revisions = sorted(str(r) for r in stored)
    heads = known_heads()
    if set(revisions) != heads:
        raise BackupError(
            f"the source database is at revision {', '.join(revisions) or 'none'} but this "
            f"Aegis expects {', '.join(sorted(heads))}: run `aegis db upgrade`, or back up with "
            "the Aegis version that matches the database"
        )
    unknown = sorted(names - set(metadata.tables) - {VERSION_TABLE})
    if unknown:
        raise BackupError(
            f"table(s) {', '.join(unknown)} exist in the source database but no Aegis model "
            "declares them (aegis.database.models): refusing a backup that would leave them out"
        )
    return revisions


def count_rows(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def audit_head(conn: Connection) -> tuple[int, str]:
    with Session(bind=conn) as session:
        return audit_service.head(session=session)


def read_table(conn: Connection, table: Table) -> Iterator[dict[str, Any]]:
    """Every row of ``table`` in primary-key order, encoded for the backup (codec.py)."""
    kinds = [(col.name, codec.column_kind(col)) for col in table.columns]
    stmt = (
        select(*codec.select_columns(table))
        .order_by(*table.primary_key.columns)
        .execution_options(yield_per=YIELD_PER)
    )
    result = conn.execute(stmt)
    try:
        for row in result:
            yield {name: codec.encode(kind, row[i]) for i, (name, kind) in enumerate(kinds)}
    finally:
        result.close()  # a server-side cursor on PostgreSQL
