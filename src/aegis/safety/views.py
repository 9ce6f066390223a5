from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from aegis.auth.dependencies import SessionDep, require_roles
from aegis.auth.schemas import Actor
from aegis.core.types import MAX_DB_INT, IdPath
from aegis.safety import service
from aegis.safety.schemas import DrillFlagCreate, FlagPage, FlagRead, ReviewBody

router = APIRouter(prefix="/api/v1/safety", tags=["safety"])
Reader = Annotated[Actor, Depends(require_roles("operator", "approver"))]
Reviewer = Annotated[Actor, Depends(require_roles("approver"))]
Admin = Annotated[Actor, Depends(require_roles())]
REASON_PATTERN = "^(" + "|".join(service.REASONS) + ")$"


@router.get("/flags", response_model=FlagPage)
def list_flags(
    _: Reader,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern="^(open|confirmed|dismissed)$")] = None,
    reason: Annotated[str | None, Query(pattern=REASON_PATTERN)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_DB_INT)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> FlagPage:
    """The review queue, newest first (``status=open``: what is left to review)."""
    rows, next_cursor = service.list_flags(
        session=session, status=status, reason=reason, before_id=cursor, limit=limit
    )
    return FlagPage(items=[FlagRead.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("/flags/{flag_id}/review", response_model=FlagRead)
def review(flag_id: IdPath, body: ReviewBody, actor: Reviewer, session: SessionDep) -> FlagRead:
    """Close a flag: ``confirmed`` (a real problem) or ``dismissed`` (a false positive)."""
    flag = service.review(
        session=session, flag_id=flag_id, verdict=body.verdict, note=body.note, actor=actor.name
    )
    return FlagRead.model_validate(flag)


@router.post("/drill", response_model=FlagRead, status_code=201)
def drill(body: DrillFlagCreate, actor: Admin, session: SessionDep) -> FlagRead:
    """Raise a synthetic ``drill`` flag (game-day exercise 2): it is audited and counted like
    any other, so the safety alert can be exercised end to end."""
    flag = service.raise_flag(
        session=session,
        reason="drill",
        subject_kind="drill",
        subject_id=uuid.uuid4().hex,
        excerpt=body.note,
        actor=actor.name,
    )
    assert flag is not None  # a fresh subject is never flagged yet
    session.flush()
    return FlagRead.model_validate(flag)
