"""Aegis's own JWTs: short-lived access tokens and single-use refresh tokens.

Access tokens are HS256-signed with JWT_SECRET, refresh tokens with JWT_REFRESH_SECRET. During a
rotation the ``*_PREVIOUS`` secret still verifies (the new one signs); removing it, or changing a
secret without setting the previous one, invalidates every token of that kind.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from aegis.auth.errors import TokenInvalid
from aegis.core.config import Settings

ISSUER = "aegis"
AUDIENCE = "aegis-api"
ALGORITHM = "HS256"
LEEWAY_S = 10

Kind = Literal["access", "refresh"]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: float


def _secrets(settings: Settings, kind: Kind) -> list[str]:
    current = "jwt_secret" if kind == "access" else "jwt_refresh_secret"
    values = [settings.secret(current)]
    previous = getattr(settings, f"{current}_previous")
    if previous is not None:
        values.append(previous.get_secret_value())
    return values


def issue(
    settings: Settings, *, kind: Kind, subject: str, session_id: str, roles: list[str]
) -> IssuedToken:
    now = int(time.time())
    ttl = settings.access_token_ttl_s if kind == "access" else settings.refresh_token_ttl_s
    jti = str(uuid.uuid4())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "sid": session_id,
        "typ": kind,
        "jti": jti,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    }
    if kind == "access":
        claims["roles"] = roles
    token = jwt.encode(claims, _secrets(settings, kind)[0], algorithm=ALGORITHM)
    return IssuedToken(token=token, jti=jti, expires_at=float(now + ttl))


def is_local(token: str) -> bool:
    """True when the (unverified) token claims to be one of ours; decides the validator."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return claims.get("iss") == ISSUER


def verify(settings: Settings, token: str, *, kind: Kind) -> dict[str, Any]:
    """The claims of a valid token of ``kind``; raises TokenInvalid with a one-line reason."""
    reason = "invalid token"
    for secret in _secrets(settings, kind):
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "nbf", "sub", "jti", "sid"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("token expired") from None
        except jwt.InvalidSignatureError:
            reason = "token signature invalid"
            continue
        except jwt.InvalidAudienceError:
            raise TokenInvalid("token audience invalid") from None
        except jwt.PyJWTError:
            raise TokenInvalid("token malformed") from None
        if claims.get("typ") != kind:
            raise TokenInvalid(f"not an {kind} token")
        return claims
    raise TokenInvalid(reason)
