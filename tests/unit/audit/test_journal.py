"""The fallback journal: events written while the database is unreachable reach the chain."""

from __future__ import annotations

import json
from pathlib import Path

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
