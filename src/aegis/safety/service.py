"""Raise, list and review safety flags. Callers pass their session: a flag is recorded (row,
``safety.flagged`` audit event) in the same transaction as what it is about."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from aegis.audit import service as audit_service
from aegis.core import metrics
from aegis.core.logging import get_logger
from aegis.database.core import is_postgres
from aegis.safety import detect
from aegis.safety.errors import FlagAlreadyReviewed, FlagNotFound
from aegis.safety.models import SafetyFlag

log = get_logger(__name__)
REASONS = (
    "secret",
    "pii",
    "prompt_injection",
    "target_mismatch",
    "denied_recommendation",
    "drill",
)
VERDICTS = ("confirmed", "dismissed")
# safety_flags.id is a 32-bit INTEGER: PostgreSQL refuses to compare it with a larger value (a
# DataError, answered 422), while SQLite finds nothing. A larger id cannot exist.
MAX_FLAG_ID = 2**31 - 1


def raise_flag(
    *,
    session: Session,
    reason: str,
    subject_kind: str,
    subject_id: str,
    excerpt: str,
    actor: str,
) -> SafetyFlag | None:
    """Flag ``subject`` for ``reason``; None when it already is (one flag per subject and
    reason, whoever raises it and however often)."""
    if reason not in REASONS:
        raise ValueError(f"unknown safety flag reason {reason!r}")
    make = postgresql_insert if is_postgres(session) else sqlite_insert
    statement = (
        make(SafetyFlag)
        .values(
            reason=reason,
            subject_kind=subject_kind,
            subject_id=subject_id,
            excerpt=detect.scan_text(excerpt, detect.Findings({}))[: detect.EXCERPT_CHARS],
            raised_by=actor,
            status="open",
            review_note="",
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=["subject_kind", "subject_id", "reason"])
        .returning(SafetyFlag.id)
    )
    flag_id = session.execute(statement).scalar_one_or_none()
    if flag_id is None:
        return None
    flag = session.get(SafetyFlag, flag_id)
    assert flag is not None
    audit_service.record_audit_event(
        session=session,
        category="system",
        event_type="safety.flagged",
        actor=actor,
        resource=f"{subject_kind}/{subject_id}",
        data={"flag_id": flag.id, "reason": reason, "excerpt": flag.excerpt},
    )
    metrics.SAFETY_FLAGS.labels(reason).inc()
    log.warning("safety_flagged", flag_id=flag.id, reason=reason, subject=flag.subject_id)
    return flag


def screen(
    prediction: dict[str, Any], alert_texts: list[str]
) -> tuple[dict[str, Any], detect.Findings]:
    """The prediction with secrets and personal data redacted, and what it and its alerts'
    labels and annotations showed (personal data is not looked for in those: an owner's address
    in an annotation is configuration, not a leak)."""
    findings = detect.Findings({})
    screened: dict[str, Any] = detect.scan(prediction, findings)
    for text in alert_texts:
        detect.scan_text(text, findings, detect.ALERT_RULES)
    return screened, findings


def flag_findings(
    *, session: Session, subject_kind: str, subject_id: str, findings: detect.Findings, actor: str
) -> None:
    """One flag per reason in ``findings``."""
    for reason in findings.reasons:
        raise_flag(
            session=session,
            reason=reason,
            subject_kind=subject_kind,
            subject_id=subject_id,
            excerpt=findings.excerpts[reason],
            actor=actor,
        )


def list_flags(
    *,
    session: Session,
    status: str | None = None,
    reason: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> tuple[list[SafetyFlag], int | None]:
    """Newest first; the cursor for the next page (None on the last)."""
    stmt = select(SafetyFlag).order_by(SafetyFlag.id.desc()).limit(limit + 1)
    if status is not None:
        stmt = stmt.where(SafetyFlag.status == status)
    if reason is not None:
        stmt = stmt.where(SafetyFlag.reason == reason)
    if before_id is not None and before_id <= MAX_FLAG_ID:  # a larger cursor is above every id
        stmt = stmt.where(SafetyFlag.id < before_id)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def review(*, session: Session, flag_id: int, verdict: str, note: str, actor: str) -> SafetyFlag:
    """Close an open flag as ``confirmed`` (a real problem) or ``dismissed`` (a false
    positive)."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}")
    flag = (
        session.get(SafetyFlag, flag_id, with_for_update=True, populate_existing=True)
        if flag_id <= MAX_FLAG_ID
        else None
    )
    if flag is None:
        raise FlagNotFound(f"safety flag {flag_id} not found")
    if flag.status != "open":
        raise FlagAlreadyReviewed(
            f"safety flag {flag_id} is already {flag.status} (by {flag.reviewed_by})"
        )
    flag.status, flag.reviewed_by, flag.review_note = verdict, actor, note
    flag.reviewed_at = datetime.now(UTC)
    audit_service.record_audit_event(
        session=session,
        category="system",
        event_type="safety.reviewed",
        actor=actor,
        resource=f"{flag.subject_kind}/{flag.subject_id}",
        data={"flag_id": flag.id, "reason": flag.reason, "verdict": verdict, "note": note},
    )
    return flag
