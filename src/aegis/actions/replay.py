"""Replay: what would a candidate policy set have decided for every past action request?

Each stored request keeps what was asked (subjects, action, target, params, confidence,
severity); the blast-radius context is rebuilt from the requests before it. The candidate set's
decision is compared with the one recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from aegis.actions import service
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
    rows = list(
        session.scalars(
            select(ActionRequest)
            .where(ActionRequest.created_at >= since)
            .order_by(ActionRequest.created_at)
        )
    )
    history: dict[tuple[str, str], list[datetime]] = {}
    out = []
    for request in rows:
        created = service.aware(request.created_at)
        target = (request.namespace, request.name)
        recent = [ts for ts in history.get(target, []) if created - ts <= service.RECENT_WINDOW]
        body = service.evaluation_body(
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
        if request.status in service.COUNTED_STATUSES or request.status == "failed":
            history.setdefault(target, []).append(created)
        out.append(
            ReplayRow(
                request.id,
                created,
                request.action,
                f"{request.namespace}/{request.name}",
                request.requested_by,
                request.decision,
                effect,
                reason,
            )
        )
    return out
