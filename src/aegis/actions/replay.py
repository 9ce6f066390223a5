"""Replay: what would a candidate policy set have decided for every past action request?

Each stored request keeps what was asked (subjects, action, target, params, confidence,
severity); the blast-radius context is rebuilt from the requests before it, counted as the live
decision counted them (:func:`aegis.actions.limits.counted_at`) as far as the stored requests
tell (:func:`_counted_then`). The candidate set's decision is compared with the one recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from aegis.actions import limits, service
from aegis.actions.models import ActionRequest
from aegis.policy.engine import PolicySet
from aegis.policy.errors import InvalidEvaluationRequest


@dataclass(frozen=True)
class ReplayRow:
    action_id: str
    created_at: datetime
    action: str
    target: str
    requested_by: str
    recorded: str
    candidate: str
    reason: str

    @property
    def changed(self) -> bool:
        return self.recorded != self.candidate


def replay(*, session: Session, candidate: PolicySet, since: datetime) -> list[ReplayRow]:
    # The requests in the window before ``since`` are history only: the first ones replayed
    # see them as the live decision did.
    window = limits.history_window(candidate)
    start = service.aware(since)
    history_from = start - min(window, start - datetime.min.replace(tzinfo=UTC))
    rows = list(
        session.scalars(
            select(ActionRequest)
            .where(
                or_(
                    ActionRequest.created_at >= history_from,
                    ActionRequest.updated_at >= history_from,
                    ActionRequest.status.in_(limits.IN_FLIGHT),
                )
            )
            .order_by(ActionRequest.created_at)
        )
    )
    history: dict[tuple[str, str], list[ActionRequest]] = {}
    out = []
    for request in rows:
        created = service.aware(request.created_at)
        target = (request.namespace, request.name)
        if created >= start:
            counted = (_counted_then(earlier, created) for earlier in history.get(target, []))
            recent = [ts for ts in counted if ts is not None and created - ts <= window]
            out.append(_replayed(candidate, request, created, recent))
        if request.status in limits.COUNTED_STATUSES:
            history.setdefault(target, []).append(request)
    return out


def _counted_then(request: ActionRequest, then: datetime) -> datetime | None:
    """What :func:`limits.counted_at` said of ``request`` at ``then``, told from what it is now.
    Unchanged since, it was what it is. Changed since, it was in flight then if the policies
    approved it on arrival; one a person approved may still have been pending then, so it is
    not counted (a request pending approval is not)."""
    if service.aware(request.updated_at) <= then:
        return limits.counted_at(request.status, request.updated_at, then)
    if request.decision == "allow" and request.status in limits.COUNTED_STATUSES:
        return then
    return None


def _replayed(
    candidate: PolicySet, request: ActionRequest, created: datetime, recent: list[datetime]
) -> ReplayRow:
    body = limits.evaluation_body(
        subjects=list(request.subjects),
        action=request.action,
        namespace=request.namespace,
        name=request.name,
        params=request.params,
        confidence=request.confidence,
        severity=request.severity,
        recent=recent,
    )
    body["context"]["now"] = created.isoformat()
    try:
        decision = candidate.evaluate(body)
        effect, reason = decision.effect.value, decision.reason
    except InvalidEvaluationRequest as exc:
        effect, reason = "invalid", exc.message
    return ReplayRow(
        request.id,
        created,
        request.action,
        f"{request.namespace}/{request.name}",
        request.requested_by,
        request.decision,
        effect,
        reason,
    )
