"""Engines, sessions and the unit of work.

SQLite (embedded default, WAL mode) and PostgreSQL (``postgresql+psycopg://``) are both first
class. One transaction per request or job: :func:`unit_of_work` opens it and commits or rolls
back; services only ``add()`` and ``flush()``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from aegis.core.errors import ConfigError

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout, and explicit BEGIN IMMEDIATE.

    pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; taking the write lock
    at BEGIN (IMMEDIATE) means two processes never deadlock upgrading a read lock.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    # An error's message leaves out the statement's values (password hashes, idempotency keys):
    # it reaches the log with the traceback.
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("connect_args", {"connect_timeout": 5})
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    _configure_postgres(engine)
    return engine


def _configure_postgres(engine: Engine) -> None:
    """Plan every statement for its own parameters.

    psycopg prepares a statement on the server once a connection has run it five times, and
    PostgreSQL may then switch to a generic plan made from the statistics of that moment. On a
    new deployment those statistics describe empty tables, so ``WHERE fingerprint IN (...)``
    stays a sequential scan long after the table has grown (measured: 17 ms instead of 0.2 ms
    per webhook at 15,000 alerts, until autovacuum next analyses it). A custom plan costs a
    fraction of a millisecond and follows the data; the statement is still parsed only once.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: Any, _: Any) -> None:
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_conn.commit()


def is_postgres(engine_or_session: Engine | Session) -> bool:
    bind = (
        engine_or_session.get_bind()
        if isinstance(engine_or_session, Session)
        else engine_or_session
    )
    return bind.dialect.name == "postgresql"


# Query parameters whose values are shown in messages. Every other value prints as ``***``:
# drivers take any keyword (libpq's ``password``, ``sslpassword``; its ``dbname`` may even be a
# whole connection string), so a list of the secret ones would always miss one.
_PLAIN_QUERY_KEYS = frozenset(
    {
        "application_name",
        "cache",
        "channel_binding",
        "charset",
        "check_same_thread",
        "client_encoding",
        "connect_timeout",
        "gssencmode",
        "host",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "load_balance_hosts",
        "mode",
        "port",
        "sslcert",
        "sslcrl",
        "sslmode",
        "sslrootcert",
        "target_session_attrs",
        "timeout",
        "uri",
        "user",
    }
)


def redacted(url: str) -> str:
    """``url`` for messages: the password and the values of all but harmless query parameters
    (``?password=…``, ``?sslpassword=…``) replaced by ``***``."""
    parsed = make_url(url)
    shown = parsed.set(query={}).render_as_string(hide_password=True)
    pairs = [
        (key, value if key.lower() in _PLAIN_QUERY_KEYS else "***")
        for key, values in parsed.query.items()
        for value in ((values,) if isinstance(values, str) else values)
    ]
    return f"{shown}?{urlencode(pairs, safe='*/')}" if pairs else shown


def wait_for_database(engine: Engine, *, timeout_s: float) -> None:
    """Block until ``SELECT 1`` succeeds or raise a one-line ConfigError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    told = False
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except OperationalError as exc:
            if not told and sys.stderr.isatty():  # a person waiting learns why, once
                print(
                    f"waiting up to {timeout_s:g} s for the database at "
                    f"{redacted(str(engine.url))} ...",
                    file=sys.stderr,
                    flush=True,
                )
            told = True
            if time.monotonic() >= deadline:
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unreachable"
                raise ConfigError(
                    f"cannot reach the database at {redacted(str(engine.url))}: {reason}; "
                    "check DATABASE_URL and that the server is running"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def flush_new(session: Session, taken: Exception) -> None:
    """Flush a new row whose unique key the caller checked was free: a conflict means another
    transaction took the key meanwhile (on PostgreSQL the flush waits for it), so raise
    ``taken``, the error the caller's own check raises."""
    try:
        session.flush()
    except IntegrityError:
        raise taken from None


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def redacted_url(self) -> str:
        return redacted(self.url)

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on any exception."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
