"""The audit chain under concurrency and under a database that disappears mid-stream.

Real PostgreSQL: several OS processes append at once and still build one valid chain; a TCP
proxy the test owns is cut mid-stream, events go to the journal, and after the database returns
every event lands exactly once, in order.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aegis.audit import verify
from aegis.audit.journal import AuditWriter
from aegis.audit.models import AuditEntry
from aegis.core import metrics
from aegis.database.core import Database
from tests.support import services
from tests.support.proxy import TcpProxy

WRITERS, EVENTS = 8, 500

WRITER = textwrap.dedent(
    """
    import sys
    from aegis.audit import service
    from aegis.database.core import Database
    db = Database(sys.argv[1])
    for i in range(int(sys.argv[3])):
        with db.unit_of_work() as session:
            service.record_audit_event(session=session, category="system", event_type="bench",
                                       actor=sys.argv[2], data={"i": i})
    db.dispose()
    """
)


@pytest.fixture
def pg_db(pg_admin_url: str, db_url: str) -> str:
    """The test's private PostgreSQL database (these tests are parametrised to PostgreSQL)."""
    assert db_url.startswith("postgresql")
    return db_url


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_concurrent_writer_processes_build_one_valid_chain(pg_db: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, pg_db, f"writer{w}", str(EVENTS)])
        for w in range(WRITERS)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0] * WRITERS
    database = Database(pg_db)
    with database.unit_of_work() as session:
        report = verify.verify(session=session, store=None, public_key=None)
        per_writer = dict(
            session.execute(select(AuditEntry.actor, func.count()).group_by(AuditEntry.actor)).all()
        )
    database.dispose()
    assert report.ok, report.problems
    assert report.entries == WRITERS * EVENTS
    assert per_writer == {f"writer{w}": EVENTS for w in range(WRITERS)}


@pytest.fixture
def proxied(pg_db: str) -> Iterator[tuple[TcpProxy, str]]:
    name = pg_db.rsplit("/", 1)[1]
    with TcpProxy(services.PG_HOST, services.PG_PORT) as proxy:
        yield proxy, f"postgresql+psycopg://{services.PG_USER}@127.0.0.1:{proxy.port}/{name}"


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_events_written_while_the_database_is_cut_off_land_once_in_order(
    proxied: tuple[TcpProxy, str], pg_db: str, tmp_path: Path
) -> None:
    proxy, url = proxied
    database = Database(url)
    writer = AuditWriter(database, tmp_path / "journal.jsonl")
    errors_before = metrics.AUDIT_WRITE_ERRORS.labels("database")._value.get()

    for i in range(5):
        writer.record(category="auth", event_type="login.succeeded", actor="a", data={"i": i})
    proxy.cut()
    for i in range(5, 15):
        writer.record(category="auth", event_type="login.succeeded", actor="a", data={"i": i})
    journalled = [
        json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()
    ]
    assert [e["data"]["i"] for e in journalled] == list(range(5, 15))
    assert metrics.AUDIT_WRITE_ERRORS.labels("database")._value.get() > errors_before

    proxy.restore()
    writer.record(category="auth", event_type="login.succeeded", actor="a", data={"i": 15})
    assert writer.drain()
    database.dispose()

    direct = Database(pg_db)
    with direct.unit_of_work() as session:
        order = [
            json.loads(e.data)["i"]
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq))
        ]
        report = verify.verify(session=session, store=None, public_key=None)
    direct.dispose()
    assert order == list(range(16))  # every event once, in the order it happened
    assert report.ok
    assert writer.journal.pending() == 0


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_replayed_journal_never_duplicates(pg_db: str, tmp_path: Path) -> None:
    """A crash after the commit but before the journal was truncated replays nothing twice."""
    database = Database(pg_db)
    writer = AuditWriter(database, tmp_path / "journal.jsonl")
    from aegis.audit.schemas import AuditEventCreate

    event = AuditEventCreate(category="auth", event_type="x", actor="a", event_id="e-1")
    with writer.journal.locked():
        writer.journal.append(event)
    assert writer.drain()
    with writer.journal.locked():
        writer.journal.append(event)  # the same event again, as after a crash
    assert writer.drain()
    with database.unit_of_work() as session:
        count = session.scalar(select(func.count()).select_from(AuditEntry))
    database.dispose()
    assert count == 1
