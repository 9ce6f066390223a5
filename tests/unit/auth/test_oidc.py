"""OIDC bearer tokens validated against a real discovery/JWKS server on loopback."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from aegis.auth.errors import TokenInvalid
from aegis.auth.oidc import OIDCValidator, get_actor_from_token, validate_oidc_token
from aegis.backend_app import create_app
from aegis.core.config import Settings
from tests.support.oidc_provider import Provider


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.close()


@pytest.fixture
def validator(provider: Provider) -> OIDCValidator:
    return OIDCValidator(
        issuer=provider.issuer,
        audience="aegis",
        role_map={"sre-oncall": ["operator", "approver"]},
        jwks_refresh_cooldown_s=0,
    )


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_token_gives_actor_with_mapped_roles(
    provider: Provider, validator: OIDCValidator
) -> None:
    token = provider.token(provider.add_key("RS256"))
    claims = validate_oidc_token(token, validator=validator)
    actor = get_actor_from_token(token, validator=validator)
    assert claims["sub"] == "user-1"
    assert actor.name == "olivia"
    assert actor.roles == frozenset({"operator", "approver"})
    assert actor.kind == "oidc"


def test_ec_keys_work_too(provider: Provider, validator: OIDCValidator) -> None:
    assert validator.validate(provider.token(provider.add_key("ES256")))["sub"] == "user-1"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "token expired"),
        ({"nbf": int(time.time()) + 3600}, "token not yet valid"),
        ({"iss": "http://evil.example"}, "token issuer invalid"),
    ],
)
def test_bad_claims_are_refused(
    provider: Provider, validator: OIDCValidator, claims: dict[str, Any], reason: str
) -> None:
    token = provider.token(provider.add_key(), **claims)
    with pytest.raises(TokenInvalid, match=reason):
        validator.validate(token)


def test_wrong_audience_is_refused(provider: Provider, validator: OIDCValidator) -> None:
    with pytest.raises(TokenInvalid, match="audience"):
        validator.validate(provider.token(provider.add_key(), audience="another-app"))


def test_small_clock_skew_is_tolerated(provider: Provider, validator: OIDCValidator) -> None:
    token = provider.token(provider.add_key(), nbf=int(time.time()) + 10)
    assert validator.validate(token)


def test_alg_none_is_refused(provider: Provider, validator: OIDCValidator) -> None:
    kid = provider.add_key()
    unsigned = f"{_b64({'alg': 'none', 'kid': kid})}.{_b64({'sub': 'x', 'iss': provider.issuer})}."
    with pytest.raises(TokenInvalid, match="algorithm 'none' not allowed"):
        validator.validate(unsigned)


def test_hs256_signed_with_the_public_key_is_refused(
    provider: Provider, validator: OIDCValidator
) -> None:
    kid = provider.add_key()
    public_pem = (
        provider.keys[kid][0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64({"alg": "HS256", "kid": kid, "typ": "JWT"})
    now = int(time.time())
    payload = _b64(
        {"iss": provider.issuer, "aud": "aegis", "sub": "x", "iat": now, "exp": now + 60}
    )
    import hashlib
    import hmac

    signature = (
        base64.urlsafe_b64encode(
            hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        )
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(TokenInvalid, match="HS256"):
        validator.validate(f"{header}.{payload}.{signature}")


def test_token_whose_alg_differs_from_its_jwk_is_refused(
    provider: Provider, validator: OIDCValidator
) -> None:
    kid = provider.add_key("RS256")
    key = provider.keys[kid][0]
    token = jwt.encode(
        {
            "iss": provider.issuer,
            "aud": "aegis",
            "sub": "x",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        key,
        algorithm="PS256",
        headers={"kid": kid},
    )
    with pytest.raises(TokenInvalid, match="does not match its key"):
        validator.validate(token)


def test_unknown_kid_is_refused(provider: Provider, validator: OIDCValidator) -> None:
    kid = provider.add_key()
    token = provider.token(kid)
    del provider.keys[kid]
    provider.add_key()
    with pytest.raises(TokenInvalid, match="not in the identity provider's key set"):
        validator.validate(token)


def test_rotated_key_is_fetched_on_unknown_kid(
    provider: Provider, validator: OIDCValidator
) -> None:
    validator.validate(provider.token(provider.add_key()))
    fetches = provider.fetches
    validator.validate(provider.token(provider.add_key()))  # new kid, published after caching
    assert provider.fetches == fetches + 1


def test_jwks_is_cached_between_tokens(provider: Provider, validator: OIDCValidator) -> None:
    kid = provider.add_key()
    for _ in range(3):
        validator.validate(provider.token(kid))
    assert provider.fetches == 1


def test_api_accepts_oidc_bearer_tokens(
    provider: Provider, db_url: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        database_url=db_url,
        oidc_issuer=provider.issuer,
        oidc_audience="aegis",
        oidc_role_map={"sre-oncall": ["viewer"]},
    )
    token = provider.token(provider.add_key())
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        forged = client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {token[:-4]}AAAA"}
        )
    assert response.status_code == 200
    assert response.json() == {"name": "olivia", "roles": ["viewer"], "kind": "oidc"}
    assert forged.status_code == 401


@pytest.mark.parametrize(
    "token", ["not-a-jwt", "a.b.c", ""], ids=["no dots", "not base64 json", "empty"]
)
def test_malformed_token_is_refused(validator: OIDCValidator, token: str) -> None:
    with pytest.raises(TokenInvalid, match="malformed"):
        validator.validate(token)


def test_token_without_a_key_id_is_refused(provider: Provider, validator: OIDCValidator) -> None:
    kid = provider.add_key()
    key, alg = provider.keys[kid]
    token = jwt.encode({"sub": "x", "iss": provider.issuer, "aud": "aegis"}, key, algorithm=alg)
    with pytest.raises(TokenInvalid, match="no key id"):
        validator.validate(token)


def test_token_missing_a_required_claim_is_refused(
    provider: Provider, validator: OIDCValidator
) -> None:
    kid = provider.add_key()
    key, alg = provider.keys[kid]
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": "aegis", "sub": "u", "exp": now + 300}  # no iat
    token = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
    with pytest.raises(TokenInvalid, match="token invalid"):
        validator.validate(token)


def test_unreachable_identity_provider_fails_closed(provider: Provider) -> None:
    token = provider.token(provider.add_key())
    issuer = provider.issuer
    provider.close()  # nothing listens there any more
    validator = OIDCValidator(issuer=issuer, audience="aegis", role_map={}, timeout_s=2.0)
    with pytest.raises(TokenInvalid, match="discovery failed"):
        validator.validate(token)


def test_discovery_document_naming_another_issuer_is_refused(provider: Provider) -> None:
    provider.advertised_issuer = "http://evil.example"
    validator = OIDCValidator(issuer=provider.issuer, audience="aegis", role_map={})
    with pytest.raises(TokenInvalid, match="issuer mismatch"):
        validator.validate(provider.token(provider.add_key()))


def test_groups_naming_roles_directly_count_and_unknown_groups_give_nothing(
    provider: Provider, validator: OIDCValidator
) -> None:
    token = provider.token(provider.add_key(), groups=["viewer", "wizards", "sre-oncall"])
    assert validator.actor(token).roles == frozenset({"viewer", "operator", "approver"})
    nobody = provider.token(provider.add_key(), groups="wizards")
    assert validator.actor(nobody).roles == frozenset()
