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
    limited_address,
    require_roles,
)
from aegis.auth.errors import PermissionDenied
from aegis.auth.schemas import (
    Actor,
    LoginRequest,
    MeRead,
    PasswordChange,
    PasswordReset,
    RefreshRequest,
    RolesUpdate,
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
    enforce(ctx, f"login:ip:{limited_address(request)}", limit=limit, name="login")
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
    limit = ctx.settings.rate_limit_api_per_minute
    enforce(ctx, f"refresh:ip:{limited_address(request)}", limit=limit, name="api")
    return service.refresh(
        session=session, settings=ctx.settings, refresh_token=body.refresh_token, client_ip=ip
    )


@router.post("/auth/logout", status_code=204)
def logout(request: Request, actor: AnyUser, session: SessionDep) -> None:
    """End the caller's session: its access and refresh tokens stop working at once."""
    service.logout(session=session, actor=actor, client_ip=client_ip(request))


@router.post("/auth/password", status_code=204)
def change_password(
    body: PasswordChange, actor: AnyUser, ctx: ContextDep, session: SessionDep
) -> None:
    """Change the caller's own password (local users). Every session of theirs ends, this one
    included: log in again with the new password."""
    if actor.kind != "user":
        raise PermissionDenied("only local users have a password here; change it at your IdP")
    limit = ctx.settings.rate_limit_login_per_minute
    enforce(ctx, f"password:user:{actor.name.lower()}", limit=limit, name="login")
    service.change_password(
        session=session,
        username=actor.name,
        current=body.current_password,
        new=body.new_password,
    )


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


@router.put("/users/{username}/roles", response_model=UserRead)
def set_roles(username: str, body: RolesUpdate, actor: Admin, session: SessionDep) -> UserRead:
    """Replace a user's roles; their sessions end (tokens carry the roles they were issued)."""
    user = service.set_roles(
        session=session, username=username, roles=list(body.roles), actor=actor.name
    )
    return UserRead.model_validate(user)


@router.post("/users/{username}/disable", response_model=UserRead)
def disable_user(username: str, actor: Admin, session: SessionDep) -> UserRead:
    """Disable a user: they cannot log in and their sessions end."""
    user = service.set_disabled(session=session, username=username, disabled=True, actor=actor.name)
    return UserRead.model_validate(user)


@router.post("/users/{username}/enable", response_model=UserRead)
def enable_user(username: str, actor: Admin, session: SessionDep) -> UserRead:
    user = service.set_disabled(
        session=session, username=username, disabled=False, actor=actor.name
    )
    return UserRead.model_validate(user)


@router.put("/users/{username}/password", status_code=204)
def reset_password(username: str, body: PasswordReset, actor: Admin, session: SessionDep) -> None:
    """Set a user's password (an admin's reset); their sessions end."""
    service.reset_password(
        session=session, username=username, password=body.password, actor=actor.name
    )


__all__ = ["ActorDep", "router"]
