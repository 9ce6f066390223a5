"""Request dependencies: the unit of work, who is asking, and what they may do.

Every non-public route declares ``Depends(require_roles(...))``; a test walks the app and fails
when a route has none. Roles: viewer < operator, approver < admin (admin may do everything).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from aegis.auth import service, tokens
from aegis.auth.errors import PermissionDenied, RateLimited, TokenInvalid
from aegis.auth.oidc import OIDCValidator
from aegis.auth.ratelimit import FailClosedLimiter
from aegis.auth.schemas import Actor
from aegis.core import http
from aegis.core.context import AppContext, get_context
from aegis.core.errors import AegisError, Unauthorized

SERVICE_KEY_HEADER = "X-API-Key"


def _session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the route returns, rolled back on error.

    An error that sets ``commit = True`` (a detected refresh-token reuse) commits what was done
    before it — the revocation and its audit record must persist.
    """
    ctx: AppContext = request.app.state.ctx
    session = ctx.db.sessions()
    try:
        yield session
        session.commit()
    except AegisError as exc:
        if getattr(exc, "commit", False):
            session.commit()
        else:
            session.rollback()
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


get_session = Depends(_session, scope="function")
SessionDep = Annotated[Session, get_session]
ContextDep = Annotated[AppContext, Depends(get_context)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limited_address(request: Request) -> str:
    """What the per-IP limits count: an IPv6 client's /64, since one host is given a whole /64
    and may send from any address of it (each would otherwise bring a fresh budget); an IPv4
    client (also written IPv4-mapped, ``::ffff:192.0.2.1``) by its address. Audit records keep
    :func:`client_ip`."""
    ip = client_ip(request)
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def limiter(ctx: AppContext) -> FailClosedLimiter:
    found: FailClosedLimiter = ctx.extras["limiter"]
    return found


def enforce(ctx: AppContext, key: str, *, limit: int, name: str) -> None:
    verdict = limiter(ctx).hit(key, limit=limit, period_s=60.0, name=name)
    if not verdict.allowed:
        raise RateLimited("too many requests; retry later", retry_after=verdict.retry_after_s)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _service_actor(ctx: AppContext, presented: str) -> Actor | None:
    settings = ctx.settings
    candidates = [settings.api_key, settings.api_key_previous]
    for secret in candidates:
        if secret is not None and hmac.compare_digest(
            secret.get_secret_value().encode(), presented.encode()
        ):
            return Actor(name="ai-engine", roles=frozenset(), kind="service")
    return None


def limit_failed_authentication(ctx: AppContext, request: Request) -> None:
    """Count a failed authentication against the caller's address: past
    ``RATE_LIMIT_API_PER_MINUTE`` a minute this raises 429 (not audited) instead of letting the
    caller's 401 be audited, so that a loop of bad credentials cannot flood the audit chain."""
    enforce(
        ctx,
        f"auth-failed:ip:{limited_address(request)}",
        limit=ctx.settings.rate_limit_api_per_minute,
        name="auth_failed",
    )


def current_actor(request: Request, ctx: ContextDep, session: SessionDep) -> Actor:
    """Resolve the caller from a bearer token (Aegis or OIDC) or the engine's service key.

    Each failure is audited (:mod:`aegis.auth.handlers`). Past ``RATE_LIMIT_API_PER_MINUTE``
    failures a minute from one address the answer is 429 instead, not audited: a caller looping
    on a bad token cannot turn its requests into as many transactions on the audit chain."""
    try:
        actor = _authenticate(request, ctx, session)
    except Unauthorized:
        limit_failed_authentication(ctx, request)
        raise
    enforce(
        ctx,
        f"api:user:{actor.kind}:{actor.name}",
        limit=ctx.settings.rate_limit_api_per_minute,
        name="api",
    )
    request.state.actor = actor
    if actor.kind == "service":
        http.mark_service_caller(request)
    return actor


def _authenticate(request: Request, ctx: AppContext, session: Session) -> Actor:
    service_key = request.headers.get(SERVICE_KEY_HEADER)
    if service_key:
        actor = _service_actor(ctx, service_key)
        if actor is None:
            raise TokenInvalid("service key invalid")
        return actor
    token = _bearer(request)
    if token is None:
        raise TokenInvalid("missing bearer token")
    return _token_actor(ctx, session, token)


def _token_actor(ctx: AppContext, session: Session, token: str) -> Actor:
    if tokens.is_local(token):
        claims = tokens.verify(ctx.settings, token, kind="access")
        if not service.session_active(session=session, session_id=str(claims["sid"])):
            raise TokenInvalid("session revoked")
        return Actor(
            name=str(claims["sub"]),
            roles=frozenset(claims.get("roles", [])),
            kind="user",
            session_id=str(claims["sid"]),
        )
    validator: OIDCValidator | None = ctx.extras.get("oidc")
    if validator is None:
        raise TokenInvalid("token issuer not trusted")
    return validator.actor(token)


ActorDep = Annotated[Actor, Depends(current_actor)]


def require_roles(*roles: str, principals: tuple[str, ...] = ()) -> Callable[..., Actor]:
    """A dependency that admits ``roles`` (and admin), plus the named service principals."""
    allowed = set(roles)

    def dependency(actor: ActorDep) -> Actor:
        if actor.kind == "service":
            if actor.name in principals:
                return actor
        elif actor.has_any(allowed):
            return actor
        raise PermissionDenied(f"requires role {' or '.join(sorted(allowed | {'admin'}))}")

    dependency.__aegis_rbac__ = (tuple(sorted(allowed)), principals)  # type: ignore[attr-defined]
    return dependency


def rbac_of(call: Any) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The (roles, principals) a require_roles dependency admits; None for anything else."""
    found: tuple[tuple[str, ...], tuple[str, ...]] | None = getattr(call, "__aegis_rbac__", None)
    return found
