from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask

from aegis.actions import approvals, jobs, service
from aegis.actions.errors import ActionInputInvalid
from aegis.actions.schemas import (
    ActionCreate,
    ActionPage,
    ActionRead,
    ApprovalBody,
    OutcomeRead,
    RejectBody,
)
from aegis.auth.dependencies import ContextDep, SessionDep, require_roles
from aegis.auth.schemas import Actor

router = APIRouter(prefix="/api/v1/actions", tags=["actions"])
Requester = Annotated[Actor, Depends(require_roles("operator", principals=("ai-engine",)))]
Approver = Annotated[Actor, Depends(require_roles("approver"))]
Reader = Annotated[Actor, Depends(require_roles("viewer", "operator", "approver"))]
STATUS_PATTERN = "^(" + "|".join(service.STATUSES) + ")$"


@router.post(
    "",
    response_model=ActionRead,
    status_code=201,
    responses={200: {"model": ActionRead, "description": "idempotent replay"}},
)
def request_action(
    body: ActionCreate, actor: Requester, ctx: ContextDep, session: SessionDep
) -> JSONResponse:
    """Request an action; policy decides. The same idempotency key returns the same request."""
    request, created = service.request_action(
        session=session, settings=ctx.settings, body=body, actor=actor
    )
    session.flush()  # server defaults (created_at) for the response
    body_out = ActionRead.model_validate(request).model_dump(mode="json")
    # The background task runs after the response, so after the commit the dispatcher needs.
    return JSONResponse(
        body_out, status_code=201 if created else 200, background=BackgroundTask(jobs.wake, ctx)
    )


@router.get("", response_model=ActionPage)
def list_actions(
    _: Reader,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern=STATUS_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> ActionPage:
    """Newest first; ``next_cursor`` (as ``?cursor=``) gives the next, older page. A ``status``
    no request can have is a 422, not an empty page."""
    rows, next_at = service.list_actions(
        session=session, status=status, limit=limit, after=_position(cursor)
    )
    return ActionPage(
        items=[ActionRead.model_validate(r) for r in rows],
        next_cursor=_cursor(next_at) if next_at is not None else None,
    )


def _cursor(position: service.Position) -> str:
    at, action_id = position
    return f"{service.aware(at).isoformat()}|{action_id}"


def _position(cursor: str | None) -> service.Position | None:
    """A cursor this API gave (``<created_at>|<id>``), else a 422."""
    if cursor is None:
        return None
    at, _, action_id = cursor.partition("|")
    refused = ActionInputInvalid("cursor: not one this API gave (use next_cursor)")
    try:
        when = datetime.fromisoformat(at)
        uuid.UUID(action_id)
        if when.tzinfo is None:
            raise refused
        return when.astimezone(UTC), action_id
    except (ValueError, OverflowError):  # OverflowError: a time that is no UTC date
        raise refused from None


@router.get("/outcomes", response_model=list[OutcomeRead])
def outcomes(_: Reader, session: SessionDep) -> list[OutcomeRead]:
    """What the engine has learnt: per incident kind and action, resolved vs not."""
    return [
        OutcomeRead(incident_kind=kind, action=action, **counts)
        for (kind, action), counts in sorted(service.outcome_stats(session=session).items())
    ]


@router.get("/{action_id}", response_model=ActionRead)
def get_action(action_id: str, _: Reader, session: SessionDep) -> ActionRead:
    return ActionRead.model_validate(service.get(session=session, action_id=action_id))


@router.post("/{action_id}/approve", response_model=ActionRead)
def approve(action_id: str, body: ApprovalBody, actor: Approver, session: SessionDep) -> ActionRead:
    """Approve exactly the change shown: send the approval_hash you reviewed."""
    return ActionRead.model_validate(
        approvals.approve(
            session=session,
            action_id=action_id,
            actor=actor,
            presented_hash=body.approval_hash,
            comment=body.comment,
        )
    )


@router.post("/{action_id}/reject", response_model=ActionRead)
def reject(action_id: str, body: RejectBody, actor: Approver, session: SessionDep) -> ActionRead:
    return ActionRead.model_validate(
        approvals.reject(session=session, action_id=action_id, actor=actor, comment=body.comment)
    )
