"""Refusals of the engine and the executor: audited at once, repeats folded, nothing lost."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from aegis.audit import refusals, verify
from aegis.audit import service as audit_service
from aegis.audit.journal import AuditWriter
from aegis.audit.models import AuditEntry
from aegis.audit.refusals import Refusal, RefusalAuditor
from aegis.database.core import Database
from tests.support.races import at_once


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _refusal(ip: str = "10.0.0.7", code: str = "signature_invalid") -> Refusal:
    return Refusal(
        "authentication.failed", code, "bad signature", ip=ip, resource="POST /v1/actions"
    )


def _entries(database: Database) -> list[dict[str, Any]]:
    with database.unit_of_work() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()
        read = [audit_service.to_read(r) for r in rows]
        return [
            {"event_type": r.event_type, "actor": r.actor, "outcome": r.outcome, **r.data}
            for r in read
        ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auditor(database: Database, tmp_path: Path, clock: Clock) -> RefusalAuditor:
    writer = AuditWriter(database, tmp_path / "journal.jsonl")
    return RefusalAuditor(writer, service="executor", window_s=60.0, clock=clock)


def test_the_first_refusal_is_recorded_at_once(auditor: RefusalAuditor, database: Database) -> None:
    assert auditor.refused(_refusal()) is True

    [entry] = _entries(database)
    assert entry["event_type"] == "authentication.failed"
    assert entry["outcome"] == "denied"
    assert entry["actor"] == "anonymous"
    assert entry["service"] == "executor"
    assert entry["ip"] == "10.0.0.7"
    assert entry["code"] == "signature_invalid"
    assert entry["repeats"] == 0


def test_repeats_within_the_window_are_folded_into_the_next_record(
    auditor: RefusalAuditor, database: Database, clock: Clock
) -> None:
    auditor.refused(_refusal())
    for _ in range(5):
        clock.now += 10
        assert auditor.refused(_refusal()) is False
    assert len(_entries(database)) == 1

    clock.now += 60
    assert auditor.refused(_refusal()) is True

    first, second = _entries(database)
    assert second["repeats"] == 5  # folded since the first record; this one is the sixth record
    assert "first_folded_at" in second
    assert first["repeats"] == 0


def test_another_caller_or_another_code_is_its_own_kind(
    auditor: RefusalAuditor, database: Database
) -> None:
    assert auditor.refused(_refusal())
    assert auditor.refused(_refusal(ip="10.0.0.8"))
    assert auditor.refused(_refusal(code="nonce_replayed"))
    assert not auditor.refused(_refusal())

    assert [(e["ip"], e["code"]) for e in _entries(database)] == [
        ("10.0.0.7", "signature_invalid"),
        ("10.0.0.8", "signature_invalid"),
        ("10.0.0.7", "nonce_replayed"),
    ]


def test_flush_writes_what_was_folded_and_only_that(
    auditor: RefusalAuditor, database: Database
) -> None:
    auditor.refused(_refusal())
    auditor.refused(_refusal(ip="10.0.0.8"))
    for _ in range(3):
        auditor.refused(_refusal())

    assert auditor.flush() == 1
    assert auditor.flush() == 0

    *_, flushed = _entries(database)
    assert flushed["ip"] == "10.0.0.7"
    assert flushed["repeats"] == 3
    assert flushed["flushed"] is True
    assert len(_entries(database)) == 3


def test_the_chain_holding_refusals_verifies(auditor: RefusalAuditor, database: Database) -> None:
    for i in range(20):
        auditor.refused(_refusal(ip=f"10.0.0.{i % 4}"))
    auditor.flush()

    with database.unit_of_work() as session:
        report = verify.verify(session=session, store=None, public_key=None)
    assert report.ok, report.problems


def test_callers_beyond_the_table_share_one_kind(
    auditor: RefusalAuditor, database: Database, monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    monkeypatch.setattr(refusals, "MAX_KINDS", 3)
    for i in range(3):
        auditor.refused(_refusal(ip=f"10.0.1.{i}"))
    for i in range(3):
        auditor.refused(_refusal(ip=f"10.0.1.{i}"))  # each kind now holds a folded one

    assert auditor.refused(_refusal(ip="10.0.2.1"))
    assert not auditor.refused(_refusal(ip="10.0.2.2"))
    assert _entries(database)[-1]["ip"] == refusals.OTHER

    auditor.flush()  # the kinds hold nothing now: once their window passes, they make room
    clock.now += 60
    assert auditor.refused(_refusal(ip="10.0.3.1"))
    assert _entries(database)[-1]["ip"] == "10.0.3.1"


def test_refusals_from_many_threads_are_all_accounted_for(
    auditor: RefusalAuditor, database: Database
) -> None:
    def caller(i: int) -> Callable[[], bool]:
        return lambda: auditor.refused(_refusal(ip=f"10.0.0.{i % 3}"))

    at_once([caller(i) for i in range(24)])
    auditor.flush()

    entries = _entries(database)
    # every refusal is either a record of its own or counted in a later record's repeats
    accounted = sum(1 + e["repeats"] for e in entries if not e.get("flushed"))
    accounted += sum(e["repeats"] for e in entries if e.get("flushed"))
    assert accounted == 24
    assert sorted({e["ip"] for e in entries}) == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
