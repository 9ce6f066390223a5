from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from aegis.audit import service
from aegis.audit.schemas import AuditPage
from aegis.auth.dependencies import SessionDep, require_roles
from aegis.auth.schemas import Actor
from aegis.core.types import MAX_DB_INT

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
Reader = Annotated[Actor, Depends(require_roles("approver"))]


@router.get("", response_model=AuditPage)
def list_audit(  # noqa: PLR0917 - FastAPI query parameters
    _: Reader,
    session: SessionDep,
    type: Annotated[str | None, Query(max_length=64, description="category or event type")] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    since: datetime | None = None,
    cursor: Annotated[int | None, Query(ge=0, le=MAX_DB_INT)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    return service.query(
        session=session,
        type_filter=type,
        actor=actor,
        since=since,
        after_seq=cursor,
        limit=limit,
    )
