from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from aegis.auth import service
from aegis.auth.dependencies import (
    ActorDep,
    ContextDep,
    SessionDep,
    client_ip,
    enforce,
    require_roles,
)
from aegis.auth.schemas import (
    Actor,
    LoginRequest,
    MeRead,
    RefreshRequest,
    TokenPair,
    UserCreate,
    UserRead,
)

router = APIRouter(prefix="/api/v1", tags=["auth"])
Admin = Annotated[Actor, Depends(require_roles("admin"))]
AnyUser = Annotated[Actor, Depends(require_roles("viewer", "operator", "approver"))]


@router.post("/auth/login", response_model=TokenPair)
def login(body: LoginRequest, request: Request, ctx: ContextDep, session: SessionDep) -> TokenPair:
    ip = client_ip(request)
    limit = ctx.settings.rate_limit_login_per_minute
    enforce(ctx, f"login:ip:{ip}", limit=limit, name="login")
    enforce(ctx, f"login:user:{body.username.lower()}", limit=limit, name="login")
    request.state.attempted_user = body.username
    return service.login(
        session=session,
        settings=ctx.settings,
        username=body.username,
        password=body.password,
        client_ip=ip,
    )


@router.post("/auth/refresh", response_model=TokenPair)
def refresh(
    body: RefreshRequest, request: Request, ctx: ContextDep, session: SessionDep
) -> TokenPair:
    ip = client_ip(request)
    enforce(ctx, f"refresh:ip:{ip}", limit=ctx.settings.rate_limit_api_per_minute, name="api")
    return service.refresh(
        session=session, settings=ctx.settings, refresh_token=body.refresh_token, client_ip=ip
    )


@router.post("/auth/logout", status_code=204)
def logout(request: Request, actor: AnyUser, session: SessionDep) -> None:
    """End the caller's session: its access and refresh tokens stop working at once."""
    service.logout(session=session, actor=actor, client_ip=client_ip(request))


@router.get("/auth/me", response_model=MeRead)
def me(actor: AnyUser) -> MeRead:
    return MeRead(name=actor.name, roles=sorted(actor.roles), kind=actor.kind)


@router.get("/users", response_model=list[UserRead])
def list_users(_: Admin, session: SessionDep) -> list[UserRead]:
    return [UserRead.model_validate(u) for u in service.list_users(session=session)]


@router.post("/users", response_model=UserRead, status_code=201)
def create_user(body: UserCreate, actor: Admin, session: SessionDep) -> UserRead:
    user = service.create_user(
        session=session,
        username=body.username,
        password=body.password,
        roles=list(body.roles),
        actor=actor.name,
    )
    return UserRead.model_validate(user)


__all__ = ["ActorDep", "router"]
