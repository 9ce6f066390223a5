from __future__ import annotations

import base64
import binascii
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from aegis.auth.dependencies import (
    ContextDep,
    SessionDep,
    limit_failed_authentication,
    require_roles,
)
from aegis.auth.schemas import Actor
from aegis.core.types import MAX_DB_INT, IdPath
from aegis.incidents import service
from aegis.incidents.errors import WebhookUnauthorized
from aegis.incidents.schemas import (
    AlertRead,
    IncidentDetail,
    IncidentPage,
    IncidentRead,
    IngestResult,
    WebhookPayload,
)

router = APIRouter(prefix="/api/v1", tags=["incidents"])
Viewer = Annotated[Actor, Depends(require_roles("viewer", "operator", "approver"))]


def _presented_token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":  # Alertmanager's basic_auth: the password is the token
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def alertmanager(request: Request, ctx: ContextDep) -> Actor:
    """Alertmanager authenticates with ALERT_WEBHOOK_TOKEN (bearer, or basic-auth password)."""
    presented = _presented_token(request)
    expected = ctx.settings.secret("alert_webhook_token")
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        limit_failed_authentication(ctx, request)
        raise WebhookUnauthorized("webhook token missing or invalid")
    actor = Actor(name="alertmanager", roles=frozenset(), kind="service")
    request.state.actor = actor
    return actor


alertmanager.__aegis_rbac__ = ((), ("alertmanager",))  # type: ignore[attr-defined]


@router.post("/alerts/alertmanager", response_model=IngestResult)
def receive(
    payload: WebhookPayload,
    actor: Annotated[Actor, Depends(alertmanager)],
    session: SessionDep,
) -> IngestResult:
    """Alertmanager webhook (payload version 4)."""
    return service.ingest(session=session, payload=payload, actor=actor.name)


@router.get("/incidents", response_model=IncidentPage)
def list_incidents(
    _: Viewer,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern="^(open|resolved)$")] = None,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_DB_INT)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> IncidentPage:
    rows, next_cursor = service.list_incidents(
        session=session, status=status, before_id=cursor, limit=limit
    )
    return IncidentPage(
        items=[IncidentRead.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/incidents/{incident_id}", response_model=IncidentDetail)
def get_incident(incident_id: IdPath, _: Viewer, session: SessionDep) -> IncidentDetail:
    incident, alerts = service.get(session=session, incident_id=incident_id)
    base = IncidentRead.model_validate(incident).model_dump()
    return IncidentDetail(**base, alerts=[AlertRead.model_validate(a) for a in alerts])
