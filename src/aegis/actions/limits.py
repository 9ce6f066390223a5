"""An action request put to the policies: what a ``max_actions`` limit counts, and one decision
per target at a time.

The policy engine is pure: the caller passes the target's earlier actions (docs/policy.md,
"Recent actions"): those that have acted or are about to, at the time they act
(:func:`counted_at`). A limit is only as good as that history and the moment it is read, so
every decision that may let an action run (a request when it comes in, and again when a person
approves it) reads it under :func:`lock_target`: two such decisions on one (namespace, name)
happen one after the other, and the second counts the first.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.orm import Session

from aegis.actions.models import ActionRequest
from aegis.actions.schemas import ActionCreate
from aegis.database.core import is_postgres
from aegis.policy import service as policy_service
from aegis.policy.engine import PolicySet
from aegis.policy.request import Decision

RECENT_WINDOW = timedelta(hours=24)  # the least history passed, whatever the policies ask
IN_FLIGHT = ("approved", "running")  # approved, not finished: acting now or about to
# acted, or may have: a failed action may have changed something first, and one whose outcome
# is unknown (sent, and the dispatcher could not learn the outcome) may have succeeded
FINISHED = ("succeeded", "failed", "unknown")
COUNTED_STATUSES = IN_FLIGHT + FINISHED


def history_window(policy_set: PolicySet) -> timedelta:
    """How far back earlier actions are counted: the set's longest ``max_actions`` window, so
    that a limit of one a week sees last week (docs/policy.md), and at least a day."""
    return max(RECENT_WINDOW, timedelta(minutes=policy_set.max_window_minutes))


def _utc(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def counted_at(status: str, updated_at: datetime, now: datetime) -> datetime | None:
    """When a request in ``status`` counts towards a limit decided at ``now``; None: it does not.

    An approved request not finished (held by the kill switch, waiting for the executor) acts
    now or later, so it counts as acting ``now``, however long ago it was requested or
    approved. A finished one counts at the time it finished (``updated_at``: a finished request
    changes no more), not when it was requested: one a person approved an hour after the
    request ran an hour after it. One pending approval has not acted; its approval decides it
    again. Denied, rejected and expired requests never act."""
    if status in IN_FLIGHT:
        return now
    if status in FINISHED:
        return _utc(updated_at)
    return None


def recent(
    session: Session, namespace: str, name: str, window: timedelta, now: datetime
) -> list[datetime]:
    """The times of the earlier actions on (namespace, name) that a limit counts at ``now``
    (:func:`counted_at`): every one in flight, and the finished ones within ``window``."""
    rows = session.execute(
        select(ActionRequest.status, ActionRequest.updated_at).where(
            ActionRequest.namespace == namespace,
            ActionRequest.name == name,
            or_(
                ActionRequest.status.in_(IN_FLIGHT),
                ActionRequest.status.in_(FINISHED) & (ActionRequest.updated_at >= now - window),
            ),
        )
    )
    return [ts for status, changed in rows if (ts := counted_at(status, changed, now)) is not None]


def target_lock_key(namespace: str, name: str) -> int:
    """The target's ``pg_advisory_xact_lock`` key: 8 bytes of a hash, as a signed 64-bit
    integer. Two targets sharing a key only wait for each other."""
    digest = hashlib.sha256(f"aegis-action-target\0{namespace}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_target(session: Session, namespace: str, name: str) -> None:
    """Hold the target until the transaction ends, before reading its history: on PostgreSQL a
    transaction-scoped advisory lock; SQLite's transactions already hold the database's write
    lock from BEGIN (IMMEDIATE). Taken before any audit record is written (the audit chain's
    own lock comes after it in every transaction), so the two locks never wait on each other
    in a cycle."""
    if is_postgres(session):
        session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": target_lock_key(namespace, name)}
        )


def evaluation_body(
    *,
    subjects: list[str],
    action: str,
    namespace: str,
    name: str,
    params: dict[str, Any],
    confidence: float | None,
    severity: str | None,
    recent: list[datetime] | None,
) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if confidence is not None:
        context["confidence"] = confidence
    if severity is not None:
        context["severity"] = severity
    if "replicas" in params:
        context["replicas"] = params["replicas"]
    if recent is not None:
        context["recent_actions"] = [ts.isoformat() for ts in recent]
    return {
        "subject": subjects,
        "action": action,
        "resource": {"namespace": namespace, "name": name},
        "context": context,
    }


def decide(
    session: Session,
    asked: ActionCreate | ActionRequest,
    subjects: list[str],
    *,
    actor: str,
    at: datetime,
) -> tuple[Decision, str]:
    """Decide ``asked`` against the active set (audited as ``policy.evaluated``) with the
    target's history at ``at``, read under :func:`lock_target`: a request when it comes in, and
    again when a person approves it. Raises InvalidEvaluationRequest."""
    lock_target(session, asked.namespace, asked.name)
    policy_set, _ = policy_service.active_set(session=session)
    evaluation = policy_service.parse_request(
        evaluation_body(
            subjects=subjects,
            action=asked.action,
            namespace=asked.namespace,
            name=asked.name,
            params=asked.params,
            confidence=asked.confidence,
            severity=asked.severity,
            recent=recent(session, asked.namespace, asked.name, history_window(policy_set), at),
        )
    )
    return policy_service.evaluate(session=session, request=evaluation, actor=actor)
