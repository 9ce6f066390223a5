from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from aegis.auth.dependencies import SessionDep, require_roles
from aegis.auth.schemas import Actor
from aegis.core.types import IdPath
from aegis.registry import catalog
from aegis.registry.schemas import (
    ModelVersionRead,
    PromotionCreate,
    PromotionDecision,
    PromotionRead,
)

router = APIRouter(prefix="/api/v1/models", tags=["models"])
Reader = Annotated[Actor, Depends(require_roles("viewer", "operator", "approver"))]
Requester = Annotated[Actor, Depends(require_roles("operator"))]
Approver = Annotated[Actor, Depends(require_roles("approver"))]
PROMOTION_STATUS = "^(pending|approved|rejected)$"


@router.get("", response_model=list[ModelVersionRead])
def list_models(
    _: Reader, session: SessionDep, name: Annotated[str | None, Query(max_length=128)] = None
) -> list[ModelVersionRead]:
    return [
        ModelVersionRead.model_validate(v)
        for v in catalog.list_versions(session=session, name=name)
    ]


@router.get("/promotions", response_model=list[PromotionRead])
def list_promotions(
    _: Reader,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern=PROMOTION_STATUS)] = None,
) -> list[PromotionRead]:
    return [
        PromotionRead.model_validate(p)
        for p in catalog.list_promotions(session=session, status=status)
    ]


@router.post("/{name}/{version}/promotions", response_model=PromotionRead, status_code=201)
def request_promotion(
    name: str, version: str, body: PromotionCreate, actor: Requester, session: SessionDep
) -> PromotionRead:
    """Ask for a stage change; an approver other than you must approve it."""
    return PromotionRead.model_validate(
        catalog.request_promotion(
            session=session, name=name, version=version, to=body.to, actor=actor.name
        )
    )


@router.post("/promotions/{promotion_id}/approve", response_model=ModelVersionRead)
def approve(
    promotion_id: IdPath, body: PromotionDecision, actor: Approver, session: SessionDep
) -> ModelVersionRead:
    return ModelVersionRead.model_validate(
        catalog.approve(
            session=session, promotion_id=promotion_id, actor=actor.name, comment=body.comment
        )
    )


@router.post("/promotions/{promotion_id}/reject", response_model=PromotionRead)
def reject(
    promotion_id: IdPath, body: PromotionDecision, actor: Approver, session: SessionDep
) -> PromotionRead:
    return PromotionRead.model_validate(
        catalog.reject(
            session=session, promotion_id=promotion_id, actor=actor.name, comment=body.comment
        )
    )
