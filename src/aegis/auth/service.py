"""Users, logins and token rotation. Every authentication event is audited in the same
transaction as the state it changes."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from aegis.audit import service as audit_service
from aegis.auth import passwords, tokens
from aegis.auth.errors import (
    AuthenticationFailed,
    InvalidRole,
    InvalidUsername,
    LastAdmin,
    TokenInvalid,
    UserExists,
    UsernameReserved,
    UserNotFound,
    WrongPassword,
)
from aegis.auth.models import AuthSession, RefreshToken, User
from aegis.auth.schemas import ROLES, USERNAME_PATTERN, Actor, TokenPair, is_reserved
from aegis.core import metrics
from aegis.core.config import Settings
from aegis.database.core import Database, flush_new


def _now() -> datetime:
    return datetime.now(UTC)


def _check_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise InvalidRole(
            f"unknown role {unknown[0]!r}; roles are {', '.join(ROLES)}"
            if unknown
            else "at least one role is required"
        )
    return sorted(set(roles))


def _audit_user(
    session: Session, event_type: str, *, actor: str, username: str, **data: object
) -> None:
    """Record an ``auth`` event about user ``username`` (its data starts with the name)."""
    audit_service.record_audit_event(
        session=session,
        category="auth",
        event_type=event_type,
        actor=actor,
        resource=f"user:{username}",
        data={"username": username, **data},
    )


def get_user(*, session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise UserNotFound(f"user {username!r} not found")
    return user


def create_user(
    *, session: Session, username: str, password: str, roles: list[str], actor: str
) -> User:
    if not re.fullmatch(USERNAME_PATTERN, username):  # the API's rule, for every caller
        raise InvalidUsername("a username is 1-128 letters, digits, '_', '.', '@' or '-'")
    if is_reserved(username):
        raise UsernameReserved(
            f"the username {username!r} is reserved: Aegis records its own services under it"
        )
    taken = UserExists(f"user {username!r} already exists")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise taken
    user = User(
        username=username,
        password_hash=passwords.hash_password(password),
        roles=_check_roles(roles),
        disabled=False,
    )
    session.add(user)
    flush_new(session, taken)  # the id goes into the audit record
    _audit_user(session, "user.created", actor=actor, username=username, roles=user.roles)
    return user


def list_users(*, session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def _keep_an_admin(session: Session, user: User) -> None:
    """Refuse to disable, or take the admin role from, the last enabled admin.

    The enabled users are read under a row lock (PostgreSQL; SQLite transactions take the write
    lock at BEGIN), in id order, so two admins demoting each other at once are decided one
    after the other: the second sees the first's change and is refused.
    """
    if "admin" not in user.roles or user.disabled:
        return
    enabled = session.scalars(
        select(User)
        .where(User.disabled.is_(False))
        .order_by(User.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    others = [other for other in enabled if other.id != user.id]
    if not any("admin" in other.roles for other in others):
        raise LastAdmin(
            f"{user.username!r} is the last enabled admin; make another user admin first"
        )


def set_disabled(*, session: Session, username: str, disabled: bool, actor: str) -> User:
    user = get_user(session=session, username=username)
    if disabled:
        _keep_an_admin(session, user)
    user.disabled = disabled
    if disabled:
        _revoke_user_sessions(session, user.id, reason="user_disabled")
    _audit_user(
        session, "user.disabled" if disabled else "user.enabled", actor=actor, username=username
    )
    return user


def set_roles(*, session: Session, username: str, roles: list[str], actor: str) -> User:
    user = get_user(session=session, username=username)
    before = list(user.roles)
    after = _check_roles(roles)
    if "admin" not in after:
        _keep_an_admin(session, user)
    user.roles = after
    _revoke_user_sessions(session, user.id, reason="roles_changed")
    _audit_user(
        session,
        "user.roles_changed",
        actor=actor,
        username=username,
        before=before,
        after=user.roles,
    )
    return user


def reset_password(*, session: Session, username: str, password: str, actor: str) -> User:
    user = get_user(session=session, username=username)
    user.password_hash = passwords.hash_password(password)
    _revoke_user_sessions(session, user.id, reason="password_reset")
    _audit_user(session, "user.password_reset", actor=actor, username=username)
    return user


def _revoke_user_sessions(session: Session, user_id: int, *, reason: str) -> None:
    session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=_now(), revoked_reason=reason)
    )


def _issue_pair(settings: Settings, session: Session, user: User, session_id: str) -> TokenPair:
    access = tokens.issue(
        settings,
        kind="access",
        subject=user.username,
        session_id=session_id,
        roles=list(user.roles),
    )
    refresh = tokens.issue(
        settings, kind="refresh", subject=user.username, session_id=session_id, roles=[]
    )
    session.add(
        RefreshToken(
            jti=refresh.jti,
            session_id=session_id,
            expires_at=datetime.fromtimestamp(refresh.expires_at, UTC),
        )
    )
    return TokenPair(
        access_token=access.token,
        refresh_token=refresh.token,
        expires_in=settings.access_token_ttl_s,
    )


def login(
    *, session: Session, settings: Settings, username: str, password: str, client_ip: str
) -> TokenPair:
    user = session.scalar(select(User).where(User.username == username))
    ok = passwords.verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled:
        reason = "disabled" if (user is not None and ok) else "bad_credentials"
        metrics.AUTH_FAILURES.labels(reason).inc()
        raise AuthenticationFailed("invalid username or password")
    session_id = str(uuid.uuid4())
    session.add(AuthSession(id=session_id, user_id=user.id))
    session.flush()  # the refresh token row references the session
    pair = _issue_pair(settings, session, user, session_id)
    _audit_user(
        session,
        "login.succeeded",
        actor=user.username,
        username=user.username,
        ip=client_ip,
        session_id=session_id,
    )
    return pair


def refresh(
    *, session: Session, settings: Settings, refresh_token: str, client_ip: str
) -> TokenPair:
    """Exchange a refresh token for a new pair. Re-use of a spent one revokes the family.

    Raises TokenInvalid. On a reuse the raised error carries ``commit = True``: the request's
    unit of work commits the revocation and its audit record instead of rolling them back.
    """
    claims = tokens.verify(settings, refresh_token, kind="refresh")
    row = session.get(RefreshToken, claims["jti"], with_for_update=True)
    auth_session = session.get(AuthSession, claims["sid"])
    if row is None or auth_session is None:
        raise TokenInvalid("refresh token unknown")
    if auth_session.revoked_at is not None:
        raise TokenInvalid("session revoked")
    if row.used_at is not None:
        auth_session.revoked_at = _now()
        auth_session.revoked_reason = "refresh_token_reuse"
        audit_service.record_audit_event(
            session=session,
            category="auth",
            event_type="refresh_token.reused",
            actor=str(claims["sub"]),
            outcome="denied",
            resource=f"user:{claims['sub']}",
            data={
                "username": claims["sub"],
                "ip": client_ip,
                "session_id": claims["sid"],
                "reason": "spent refresh token presented again; session revoked",
            },
        )
        raise _ReuseDetected("refresh token already used; the session was revoked")
    user = session.get(User, auth_session.user_id)
    if user is None or user.disabled:
        raise TokenInvalid("user disabled")
    row.used_at = _now()
    return _issue_pair(settings, session, user, auth_session.id)


class _ReuseDetected(TokenInvalid):
    """A spent refresh token came back: its revocation must be committed, not rolled back."""

    commit = True


def logout(*, session: Session, actor: Actor, client_ip: str) -> None:
    if actor.session_id:
        auth_session = session.get(AuthSession, actor.session_id)
        if auth_session is not None and auth_session.revoked_at is None:
            auth_session.revoked_at = _now()
            auth_session.revoked_reason = "logout"
    _audit_user(session, "logout", actor=actor.name, username=actor.name, ip=client_ip)


def session_active(*, session: Session, session_id: str) -> bool:
    row = session.get(AuthSession, session_id)
    return row is not None and row.revoked_at is None


def change_password(*, session: Session, username: str, current: str, new: str) -> None:
    """A local user's own change: the current password must match; every session ends."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or user.disabled or not passwords.verify_password(user.password_hash, current):
        raise WrongPassword("the current password is wrong")
    user.password_hash = passwords.hash_password(new)
    _revoke_user_sessions(session, user.id, reason="password_changed")
    _audit_user(session, "user.password_changed", actor=username, username=username)


def count_users(*, session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(User)) or 0)


def ensure_first_admin(*, database: Database) -> tuple[str, str] | None:
    """Create user ``admin`` with a random password when there are no users at all."""
    with database.unit_of_work() as session:
        if count_users(session=session):
            return None
        password = secrets.token_urlsafe(18)
        create_user(
            session=session,
            username="admin",
            password=password,
            roles=["admin"],
            actor="system:aegis-up",
        )
        return "admin", password
