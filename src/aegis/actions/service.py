"""Action requests, decided by policy and approved by a second person.

Life of a request::

    requested ─ DENY ─────────────▶ denied
              ─ ALLOW ────────────▶ approved ─▶ running ─▶ succeeded | failed | unknown
                                             ─▶ refused (by the executor before anything
                                                ran: the confirming dry run, the first send)
              ─ REQUIRE_APPROVAL ─▶ pending_approval ─ approve ─▶ approved ─▶ …
                                                    ─ reject ──▶ rejected
                                                    ─ timeout ─▶ expired (denied on timeout,
                                                                  or answered after it: 409)

An approval signs off ``approval_hash`` = SHA-256 of the canonical (action, namespace, name,
params, dry-run diff; a restart's new stamp only as "new", see :func:`_approved_diff`). The
approver sends the hash they saw; the dispatcher runs the dry run again before acting and voids
the approval if the diff changed. The idempotency key travels end to end: the executor receives
the request id as its key, so a request is executed at most once.
Approving and rejecting a pending request is :mod:`aegis.actions.approvals`.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aegis.actions import limits
from aegis.actions.errors import (
    ActionInputInvalid,
    ActionNotFound,
    IdempotencyConflict,
)
from aegis.actions.models import ActionOutcome, ActionRequest
from aegis.actions.schemas import ActionCreate
from aegis.audit import canonical
from aegis.audit import service as audit_service
from aegis.auth.schemas import Actor
from aegis.core.config import Settings
from aegis.database import bulk
from aegis.executor.backends.protocol import STATE_PATHS
from aegis.executor.schemas import ExecutorActionRequest
from aegis.policy.errors import InvalidEvaluationRequest
from aegis.safety import service as safety_service

AI_ENGINE = "ai-engine"  # the AI engine's service principal
ACTIONS = ("restart_deployment", "scale_deployment", "delete_pod", "rollback_deployment")
# Every status a request can have (the life above); the list's ?status= takes only these.
STATUSES = (
    "pending_approval",
    "approved",
    "running",
    "succeeded",
    "failed",
    "unknown",
    "refused",
    "denied",
    "rejected",
    "expired",
)
RESTART_STAMP_PATH = STATE_PATHS["restarted_at"]


def now() -> datetime:
    return datetime.now(UTC)


def aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def body_hash(body: ActionCreate) -> str:
    return hashlib.sha256(
        canonical.canonical(
            {
                "action": body.action,
                "namespace": body.namespace,
                "name": body.name,
                "params": body.params,
            }
        )
    ).hexdigest()


def approval_hash(request: ActionRequest, diff: list[dict[str, Any]] | None) -> str:
    return hashlib.sha256(
        canonical.canonical(
            {
                "action": request.action,
                "namespace": request.namespace,
                "name": request.name,
                "params": request.params,
                "diff": _approved_diff(diff),
            }
        )
    ).hexdigest()


def _approved_diff(diff: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """The diff an approval binds. A restart stamps the time it happens, so the stamp a dry run
    shows is never the one the restart writes: the approval binds the stamp before, and that
    there is a new one, or no approved restart would survive the dry run before acting."""
    if diff is None:
        return None
    return [
        {**entry, "after": "<the time of the restart>"}
        if entry.get("path") == RESTART_STAMP_PATH
        else entry
        for entry in diff
    ]


def audit(
    session: Session, request: ActionRequest, event_type: str, actor: str, **extra: Any
) -> None:
    data: dict[str, Any] = {
        "action_id": request.id,
        "action": request.action,
        "namespace": request.namespace,
        "name": request.name,
        "params": request.params,
        "status": request.status,
        "requested_by": request.requested_by,
        "policy_set_digest": request.policy_set_digest,
        "model_digest": request.model_digest,
        "incident_id": request.incident_id,
    }
    data.update(extra)
    audit_service.record_audit_event(
        session=session,
        category="action",
        event_type=event_type,
        actor=actor,
        resource=f"{request.namespace}/{request.name}",
        outcome=request.status,
        data=data,
    )


def get(*, session: Session, action_id: str, lock: bool = False) -> ActionRequest:
    """The request; with ``lock``, its row is locked until the transaction ends and re-read, so
    two decisions on one request (approve and reject, approve and expire) happen one after the
    other and the second sees the first (``FOR UPDATE`` on PostgreSQL; SQLite's transactions
    already take the write lock at BEGIN)."""
    found = session.get(ActionRequest, action_id, with_for_update=lock, populate_existing=lock)
    if found is None:
        raise ActionNotFound(f"action {action_id} not found")
    return found


Position = tuple[datetime, str]  # (created_at, id): where a page of the action list ends


def list_actions(
    *,
    session: Session,
    status: str | None = None,
    limit: int = 100,
    after: Position | None = None,
) -> tuple[list[ActionRequest], Position | None]:
    """Newest first (ties by id), from just after ``after``; and where the next page starts
    (None on the last)."""
    stmt = (
        select(ActionRequest)
        .order_by(ActionRequest.created_at.desc(), ActionRequest.id.desc())
        .limit(limit + 1)
    )
    if status:
        stmt = stmt.where(ActionRequest.status == status)
    if after is not None:
        at, action_id = after
        stmt = stmt.where(
            or_(
                ActionRequest.created_at < at,
                and_(ActionRequest.created_at == at, ActionRequest.id < action_id),
            )
        )
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, ((rows[-1].created_at, rows[-1].id) if more and rows else None)


def _check_executable(body: ActionCreate, actor: Actor) -> None:
    """The executor's own request shape (names, params per action), checked up front."""
    try:
        ExecutorActionRequest(
            action_id="check",
            action=body.action,
            namespace=body.namespace,
            name=body.name,
            params=body.params,
            idempotency_key=body.idempotency_key,
            requested_by=actor.name,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ActionInputInvalid(f"{where}: {message}" if where else message) from None


def _check_incident(session: Session, body: ActionCreate, actor: Actor) -> None:
    """The incident a request names exists: its outcome is learnt from that incident (and the
    re-check would wait for ever on one that does not exist). Only the AI engine names the kind
    of incident an outcome is learnt under: the engine's confidence for a kind, which
    ``min_confidence`` policies trust to act without a person, must not be a person's to set."""
    from aegis.incidents import service as incidents_service
    from aegis.incidents.models import Incident

    if body.incident_kind is not None and not _is_engine(actor):
        raise ActionInputInvalid(
            "incident_kind: named by the AI engine only; an action on an incident (incident_id) "
            "is learnt under that incident's own kind"
        )
    if body.incident_id is not None and (
        # an id outside the 32-bit column: PostgreSQL refuses to compare it, SQLite to bind one
        # below its 64-bit integers; no incident has it
        not 1 <= body.incident_id <= incidents_service.MAX_INCIDENT_ID
        or session.get(Incident, body.incident_id) is None
    ):
        raise ActionInputInvalid(f"incident_id: incident {body.incident_id} does not exist")


def _is_engine(actor: Actor) -> bool:
    return actor.kind == "service" and actor.name == AI_ENGINE


def _replay(
    session: Session, body: ActionCreate, digest: str, actor: Actor
) -> ActionRequest | None:
    """The request already recorded under ``body``'s idempotency key, if any; 409 when that key
    was used for a different request, or by another requester (whose request it is, not the
    caller's: the caller's own would never be recorded)."""
    existing = session.scalar(
        select(ActionRequest).where(ActionRequest.idempotency_key == body.idempotency_key)
    )
    if existing is not None and existing.requested_by != actor.name:
        raise IdempotencyConflict(
            f"idempotency key {body.idempotency_key!r} was used by another requester"
        )
    if existing is not None and existing.body_hash != digest:
        raise IdempotencyConflict(
            f"idempotency key {body.idempotency_key!r} was used for a different request"
        )
    return existing


def request_action(
    *, session: Session, settings: Settings, body: ActionCreate, actor: Actor
) -> tuple[ActionRequest, bool]:
    """Record and decide a request. Returns (request, created); a replay returns the original."""
    digest = body_hash(body)
    replay = _replay(session, body, digest, actor)
    if replay is not None:
        return replay, False
    if body.action not in ACTIONS:
        raise ActionInputInvalid(
            f"action: unknown action type {body.action!r}; one of {', '.join(ACTIONS)}"
        )
    _check_executable(body, actor)
    _check_incident(session, body, actor)
    subjects = sorted(actor.subjects)
    try:
        decision, set_digest = limits.decide(session, body, subjects, actor=actor.name, at=now())
    except InvalidEvaluationRequest as exc:
        raise ActionInputInvalid(exc.message) from None
    effect = decision.effect.value
    status = {"allow": "approved", "deny": "denied", "require_approval": "pending_approval"}
    request = ActionRequest(
        id=str(uuid.uuid4()),
        action=body.action,
        namespace=body.namespace,
        name=body.name,
        params=body.params,
        reason=body.reason,
        idempotency_key=body.idempotency_key,
        body_hash=digest,
        requested_by=actor.name,
        subjects=subjects,
        incident_id=body.incident_id,
        incident_kind=body.incident_kind,
        confidence=body.confidence,
        severity=body.severity,
        model_digest=body.model_digest,
        status=status[effect],
        decision=effect,
        decision_reason=decision.reason,
        decision_policies=[{"id": r.id, "version": r.version} for r in decision.policies],
        policy_set_digest=set_digest,
        attempts=0,
        next_attempt_at=now(),
        expires_at=(
            now() + timedelta(seconds=settings.action_approval_ttl_s)
            if effect == "require_approval"
            else None
        ),
        created_at=now(),
        updated_at=now(),
    )
    try:
        with session.begin_nested():
            session.add(request)
    except IntegrityError:  # the same key, committed meanwhile by a concurrent retry
        replay = _replay(session, body, digest, actor)
        if replay is None:
            raise
        return replay, False
    audit(session, request, "action.requested", actor.name, reason=body.reason)
    event = {
        "allow": "action.allowed",
        "deny": "action.denied",
        "require_approval": "action.pending_approval",
    }[effect]
    audit(
        session,
        request,
        event,
        "policy",
        decision=effect,
        reason=decision.reason,
        policies=request.decision_policies,
    )
    if effect == "deny" and _is_engine(actor):
        # The AI proposed what the rules forbid: a human should know.
        safety_service.raise_flag(
            session=session,
            reason="denied_recommendation",
            subject_kind="action",
            subject_id=request.id,
            excerpt=f"{body.action} {body.namespace}/{body.name}: {decision.reason}",
            actor="policy",
        )
    return request, True


def set_dry_run(*, session: Session, request: ActionRequest, diff: list[dict[str, Any]]) -> None:
    request.dry_run_diff = diff
    request.approval_hash = approval_hash(request, diff)
    request.updated_at = now()
    audit(
        session,
        request,
        "action.dry_run",
        "executor",
        diff=diff,
        approval_hash=request.approval_hash,
    )


def expire(*, session: Session, request: ActionRequest) -> None:
    """Deny ``request`` on timeout: its approval deadline passed with no answer. The sweep
    (:func:`aegis.actions.jobs.expire_pending`) and an answer that comes too late both end here."""
    request.status, request.updated_at = "expired", now()
    audit(
        session,
        request,
        "action.expired",
        "system",
        reason="no approval before the deadline: denied on timeout",
    )


def incident_kind(session: Session, request: ActionRequest) -> str:
    """The kind outcomes are learnt under: the kind the engine named with its request; for a
    person's action on an incident, the kind the engine predicted for that incident, else its
    alert name; "manual" for an action on no incident."""
    from aegis.incidents import service as incidents_service

    if request.incident_kind:
        return request.incident_kind
    if request.incident_id is None:
        return "manual"
    incident, _ = incidents_service.get(session=session, incident_id=request.incident_id)
    predicted = (incident.prediction or {}).get("incident_kind")
    if isinstance(predicted, str) and predicted.strip():
        return predicted[:64]
    return incident.title


def record_outcome(*, session: Session, request: ActionRequest, success: bool) -> None:
    """Count one outcome in one statement (insert, or add one on conflict), so outcomes recorded
    at once by several backends or jobs are all counted, none lost to a read-modify-write."""
    column = "successes" if success else "failures"
    bulk.upsert(
        session,
        ActionOutcome,
        {
            "incident_kind": incident_kind(session, request),
            "action": request.action,
            "successes": int(success),
            "failures": int(not success),
        },
        keys=["incident_kind", "action"],
        update_with={column: getattr(ActionOutcome, column) + 1},
    )


def outcome_stats(*, session: Session) -> dict[tuple[str, str], dict[str, int]]:
    return {
        (r.incident_kind, r.action): {"successes": r.successes, "failures": r.failures}
        for r in session.scalars(select(ActionOutcome))
    }
