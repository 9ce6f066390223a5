"""Bearer tokens from an external OpenID Connect identity provider.

The issuer's discovery document gives the JWKS URI; the JWKS is cached and fetched again when a
token names a ``kid`` it does not hold (rate-limited by a cooldown). Checked: signature with an
asymmetric algorithm the JWK allows (``alg: none``, HS*, a kid absent from the JWKS and a JWKS
without a usable key are refused), issuer, audience, expiry and not-before with a small clock
skew. Roles come from a configurable claim (``groups`` by default) mapped to Aegis roles. Both
documents are read with a bound (:data:`MAX_DOCUMENT_BYTES`, within the timeout:
:mod:`aegis.core.upstream`); a larger or slower one fails closed, like a provider that cannot be
reached. After a failed fetch of either document the provider is not asked again for
:data:`FAILURE_PAUSE_S`, and tokens are refused at once meanwhile: otherwise, while a provider
hangs, every request bearing a token would hold a worker thread for the whole timeout until none
was left for anyone, local (break-glass) users included.

The caller's name is the token's ``sub``: the one claim the issuer keeps stable and unique for
a user (OpenID Connect Core 5.7). ``preferred_username`` and ``email`` are neither: a user may
change them, and a token may leave them out, so a name taken from them would let one person
request under one name and approve under another. A ``sub`` that is one of Aegis's own actor
names (:data:`aegis.auth.schemas.RESERVED_NAMES`, in any case) is refused: the caller would
read as the AI engine, the policy engine or the system in the audit log and action requests.

``validate_oidc_token`` and ``get_actor_from_token`` keep the names runbook_complete.md uses.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import httpx
import jwt
from jwt import PyJWKClient, PyJWKClientConnectionError, PyJWKClientError

from aegis.auth.errors import TokenInvalid
from aegis.auth.schemas import ROLES, Actor, is_reserved
from aegis.core.config import Settings
from aegis.core.upstream import IDENTITY, AnswerRefused, MiB, read

ASYMMETRIC = {
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
}
CLOCK_SKEW_S = 30
# The most of a discovery document or key set that is read (aegis.core.upstream); real ones are
# a few KiB (a key set of a dozen RSA keys is under 20 KiB). Past it the token is refused.
MAX_DOCUMENT_BYTES = MiB
FAILURE_PAUSE_S = 5.0  # after a failed fetch, the provider is not asked again for this long
SUBJECT_PATTERN = r"^[^\x00-\x1f\x7f]{1,255}$"  # OIDC Core: sub is at most 255 ASCII characters


class OIDCValidator:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        roles_claim: str = "groups",
        role_map: dict[str, list[str]] | None = None,
        jwks_refresh_cooldown_s: float = 30.0,
        timeout_s: float = 5.0,
        failure_pause_s: float = FAILURE_PAUSE_S,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.roles_claim = roles_claim
        self.role_map = role_map or {}
        self.cooldown = jwks_refresh_cooldown_s
        self.timeout = timeout_s
        self.failure_pause = failure_pause_s
        self._jwks: PyJWKClient | None = None
        self._lock = threading.Lock()
        self._discovery_paused_until = 0.0  # time.monotonic()

    @classmethod
    def from_settings(cls, settings: Settings) -> OIDCValidator | None:
        if not settings.oidc_issuer:
            return None
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience or "aegis",
            roles_claim=settings.oidc_roles_claim,
            role_map=settings.oidc_role_map,
        )

    def _client(self) -> PyJWKClient:
        with self._lock:
            if self._jwks is None:
                if time.monotonic() < self._discovery_paused_until:
                    raise TokenInvalid("identity provider discovery failed moments ago")
                url = f"{self.issuer}/.well-known/openid-configuration"
                try:
                    document = _fetch_json(url, self.timeout)
                    jwks_uri = str(document["jwks_uri"])
                except (httpx.HTTPError, AnswerRefused, KeyError, TypeError, ValueError):
                    self._discovery_paused_until = time.monotonic() + self.failure_pause
                    raise TokenInvalid("identity provider discovery failed") from None
                if str(document.get("issuer", "")).rstrip("/") != self.issuer:
                    self._discovery_paused_until = time.monotonic() + self.failure_pause
                    raise TokenInvalid("identity provider issuer mismatch")
                jwks = _BoundedJWKClient(
                    jwks_uri,
                    cache_jwk_set=True,
                    lifespan=300,
                    cooldown_duration=self.cooldown,
                    timeout=self.timeout,
                )
                jwks.failure_pause = self.failure_pause
                self._jwks = jwks
            return self._jwks

    def validate(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenInvalid("token malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASYMMETRIC:  # a JSON list or object: no name
            raise TokenInvalid(f"token algorithm {alg!r} not allowed")
        if not header.get("kid"):
            raise TokenInvalid("token has no key id")
        key = self._signing_key(str(header["kid"]))
        if key.algorithm_name != alg:  # the JWK decides which algorithm its key may verify
            raise TokenInvalid(f"token algorithm {alg!r} does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid("token audience invalid") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid("token issuer invalid") from None
        except jwt.InvalidSignatureError:
            raise TokenInvalid("token signature invalid") from None
        except jwt.PyJWTError:
            raise TokenInvalid("token invalid") from None
        return claims

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        try:
            return self._client().get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:
            raise TokenInvalid("the identity provider's key set could not be fetched") from None
        except jwt.PyJWKClientError:
            raise TokenInvalid("token key id not in the identity provider's key set") from None
        except jwt.PyJWKSetError:  # no key at all, or none PyJWT can use: refused, not a 500
            raise TokenInvalid("the identity provider's key set holds no usable key") from None

    def roles_for(self, claims: dict[str, Any]) -> frozenset[str]:
        raw = claims.get(self.roles_claim, [])
        groups = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else []
        roles: set[str] = set()
        for group in groups:
            mapped = self.role_map.get(str(group))
            if mapped is not None:
                roles.update(mapped)
            elif group in ROLES:
                roles.add(str(group))
        return frozenset(role for role in roles if role in ROLES)

    def actor(self, token: str) -> Actor:
        claims = self.validate(token)
        subject = claims["sub"]
        if not isinstance(subject, str) or not _printable(subject):
            raise TokenInvalid("token subject is not 1 to 255 printable characters")
        if is_reserved(subject):  # it would read as one of Aegis's own services
            raise TokenInvalid("token subject is a name Aegis reserves for its own services")
        return Actor(name=subject, roles=self.roles_for(claims), kind="oidc", claims=claims)


def _printable(subject: str) -> bool:
    """Within :data:`SUBJECT_PATTERN` and printable (``str.isprintable``): no C1 control, line
    or paragraph separator, zero-width or bidirectional format character either, with which a
    name would break a log line or read as another (``system`` and a zero-width space passes
    for ``system``; after a right-to-left override ``enigne-ia`` shows as ``ai-engine``)."""
    return re.fullmatch(SUBJECT_PATTERN, subject) is not None and subject.isprintable()


def _fetch_json(url: str, timeout: float) -> Any:
    """The JSON document at ``url``, read with a bound (:data:`MAX_DOCUMENT_BYTES`)."""
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("GET", url, headers=IDENTITY) as response,
    ):
        response.raise_for_status()
        return json.loads(read(response, limit=MAX_DOCUMENT_BYTES))


class _BoundedJWKClient(PyJWKClient):
    """PyJWT's key set client with its one fetch replaced: PyJWT reads the whole answer into
    memory; this reads at most :data:`MAX_DOCUMENT_BYTES` of it (and, like PyJWT, follows no
    redirect), and after a failed fetch does not ask again for ``failure_pause`` seconds.
    Caching, cooldown and key selection stay PyJWT's."""

    failure_pause = FAILURE_PAUSE_S
    _paused_until = 0.0  # time.monotonic()

    def fetch_data(self) -> Any:
        if time.monotonic() < self._paused_until:
            raise PyJWKClientConnectionError("fetching the key set failed moments ago")
        try:
            jwk_set = _fetch_json(self.uri, self.timeout)
        except (httpx.HTTPError, AnswerRefused, ValueError) as exc:
            self._paused_until = time.monotonic() + self.failure_pause
            why = exc.message if isinstance(exc, AnswerRefused) else type(exc).__name__
            raise PyJWKClientConnectionError(f"fetching the key set failed: {why}") from None
        if not isinstance(jwk_set, dict):
            raise PyJWKClientError("The JWKS endpoint did not return a JSON object")
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(jwk_set)
        self._last_successful_fetch = time.monotonic()  # starts PyJWT's refresh cooldown
        return jwk_set


def validate_oidc_token(token: str, *, validator: OIDCValidator) -> dict[str, Any]:
    """The verified claims of an OIDC bearer token, or TokenInvalid."""
    return validator.validate(token)


def get_actor_from_token(token: str, *, validator: OIDCValidator) -> Actor:
    """The audit actor (name and mapped roles) for an OIDC bearer token."""
    return validator.actor(token)
