"""The fallback journal: events written while the database is unreachable reach the chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from aegis.audit import verify
from aegis.audit.journal import AuditWriter
from aegis.audit.models import AuditEntry
from aegis.audit.schemas import AuditEventCreate
from aegis.database.core import Database


def test_an_event_journalled_after_a_torn_line_is_kept_and_drains(
    database: Database, tmp_path: Path
) -> None:
    """A crash (or a full disk) mid-write leaves a line with no newline. The next event must not
    be glued onto it: that made one unreadable line, and every later read of the journal (each
    audit write, each drain) failed, so nothing journalled ever reached the chain."""
    journal = tmp_path / "audit-journal.jsonl"
    unreachable = Database(f"sqlite+pysqlite:///{tmp_path / 'no-such-folder' / 'aegis.db'}")
    down = AuditWriter(unreachable, journal)
    down.record(category="auth", event_type="login.failed", actor="a", data={"i": 0})
    torn = AuditEventCreate(category="auth", event_type="login.failed", actor="a")
    with journal.open("a", encoding="utf-8") as fh:  # the crash: half a line, no newline
        fh.write(torn.model_dump_json()[:40])

    down.record(category="auth", event_type="login.failed", actor="a", data={"i": 1})
    unreachable.dispose()
    drained = AuditWriter(database, journal).drain()

    with database.unit_of_work() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        report = verify.verify(session=session, store=None, public_key=None)
    assert drained
    assert [json.loads(r.data)["i"] for r in rows] == [0, 1]
    assert report.ok


def _journal_while_down(tmp_path: Path, count: int) -> Path:
    """``count`` events journalled by a writer whose database cannot be reached."""
    journal = tmp_path / "audit-journal.jsonl"
    unreachable = Database(f"sqlite+pysqlite:///{tmp_path / 'no-such-folder' / 'aegis.db'}")
    down = AuditWriter(unreachable, journal)
    for i in range(count):
        down.record(category="auth", event_type="login.failed", actor="a", data={"i": i})
    unreachable.dispose()
    return journal


def _chain(database: Database) -> tuple[list[AuditEntry], verify.VerifyReport]:
    with database.unit_of_work() as session:
        rows = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        return rows, verify.verify(session=session, store=None, public_key=None)


def test_a_line_journalled_twice_lands_once(database: Database, tmp_path: Path) -> None:
    """The same event twice in the journal (a copy put back, a line repeated) lands once, as an
    event already in the chain does. Both in one batch made the database refuse the batch (its
    event_id is unique), which was taken for the database being down: nothing journalled ever
    reached the chain again, and every later event was journalled behind it."""
    journal = _journal_while_down(tmp_path, 3)
    lines = journal.read_text(encoding="utf-8").splitlines(keepends=True)
    journal.write_text(lines[0] + "".join(lines), encoding="utf-8")

    writer = AuditWriter(database, journal)
    drained = writer.drain()
    writer.record(category="auth", event_type="login.failed", actor="b", data={"i": 3})

    rows, report = _chain(database)
    assert drained and report.ok
    assert [json.loads(r.data)["i"] for r in rows] == [0, 1, 2, 3]
    assert writer.journal.pending() == 0


def test_a_line_that_is_no_event_is_set_aside_and_recorded(
    database: Database, tmp_path: Path
) -> None:
    """A whole line that is not an event (edited, garbage) made every read of the journal raise:
    no drain ever passed, and every event recorded through the writer (a refused login) failed
    with it. It is kept aside, unread, the events around it land in order, and the chain says
    a line was refused and where it is."""
    journal = _journal_while_down(tmp_path, 2)
    good = journal.read_text(encoding="utf-8")
    first, second = good.splitlines(keepends=True)
    journal.write_bytes(
        first.encode() + b'{"category": "nope"}\n' + b"\xff\xfe not utf-8\n" + second.encode()
    )

    writer = AuditWriter(database, journal)
    writer.record(category="auth", event_type="login.failed", actor="b", data={"i": 2})

    rows, report = _chain(database)
    assert report.ok
    assert [r.event_type for r in rows] == [
        "login.failed",
        "login.failed",
        "audit.journal_refused",
        "login.failed",
    ]
    refused = json.loads(rows[2].data)
    assert refused["lines"] == 2
    kept = Path(refused["kept_in"])
    assert kept.read_bytes() == b'{"category": "nope"}\n' + b"\xff\xfe not utf-8\n"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert [json.loads(r.data).get("i") for r in rows] == [0, 1, None, 2]
    assert writer.journal.pending() == 0


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)  # SQLite stores any text
def test_an_event_the_database_refuses_is_set_aside_and_the_rest_land(
    database: Database, tmp_path: Path
) -> None:
    """PostgreSQL refuses text holding a NUL character. That refusal was taken for the database
    being down: the journal never drained again."""
    journal = _journal_while_down(tmp_path, 3)
    lines = journal.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = json.loads(lines[1])
    bad["actor"] = "a\x00b"
    lines[1] = json.dumps(bad) + "\n"
    journal.write_text("".join(lines), encoding="utf-8")

    writer = AuditWriter(database, journal)
    assert writer.drain()

    rows, report = _chain(database)
    assert report.ok
    assert [r.event_type for r in rows] == [
        "login.failed",
        "login.failed",
        "audit.journal_refused",
    ]
    assert [json.loads(r.data).get("i") for r in rows] == [0, 2, None]
    kept = Path(json.loads(rows[2].data)["kept_in"])
    assert kept.read_text(encoding="utf-8") == lines[1]
    assert writer.journal.pending() == 0
