"""OIDC bearer tokens validated against a real discovery/JWKS server on loopback."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from aegis.actions import jobs
from aegis.auth.errors import TokenInvalid
from aegis.auth.oidc import (
    MAX_DOCUMENT_BYTES,
    OIDCValidator,
    get_actor_from_token,
    validate_oidc_token,
)
from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.executor.app import create_app as executor_app
from aegis.executor.client import ExecutorClient
from tests.support import factories
from tests.support.floods import flooding
from tests.support.oidc_provider import Provider
from tests.support.proxy import TcpProxy


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
    assert actor.name == "user-1"  # the stable subject, not preferred_username
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
    assert response.json() == {"name": "user-1", "roles": ["viewer"], "kind": "oidc"}
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


class _Silent:
    """A server that accepts connections and never answers: an identity provider that hangs."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self._listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent() -> Iterator[_Silent]:
    server = _Silent()
    yield server
    server.close()


def test_a_hanging_identity_provider_is_asked_once_not_by_every_request(
    provider: Provider, silent: _Silent
) -> None:
    # While the provider hangs, each request that asked it would hold a worker thread for the
    # whole timeout (behind a lock, one after another), until none is left for anyone,
    # local break-glass admins included. After one failure the validator refuses at once.
    token = provider.token(provider.add_key())
    validator = OIDCValidator(issuer=silent.url, audience="aegis", role_map={}, timeout_s=0.5)
    for _ in range(4):
        with pytest.raises(TokenInvalid, match="discovery failed"):
            validator.validate(token)
    assert len(silent.held) == 1


def test_a_hanging_key_set_is_asked_once_not_by_every_request(
    provider: Provider, silent: _Silent
) -> None:
    provider.jwks_uri = silent.url + "/jwks"
    validator = OIDCValidator(issuer=provider.issuer, audience="aegis", role_map={}, timeout_s=0.5)
    for _ in range(4):
        token = provider.token(provider.add_key())  # a new key id each time: each asks for keys
        with pytest.raises(TokenInvalid, match="key set could not be fetched"):
            validator.validate(token)
    assert len(silent.held) == 1


def test_the_provider_is_asked_again_once_the_pause_after_a_failure_is_over(
    provider: Provider,
) -> None:
    kid = provider.add_key()
    with TcpProxy("127.0.0.1", int(provider.issuer.rsplit(":", 1)[1])) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        provider.advertised_issuer, provider.jwks_uri = url, url + "/jwks"
        token = provider.token(kid, iss=url)
        validator = OIDCValidator(issuer=url, audience="aegis", role_map={}, failure_pause_s=0.5)
        proxy.cut()
        with pytest.raises(TokenInvalid, match="discovery failed"):
            validator.validate(token)
        proxy.restore()
        time.sleep(1.0)  # past the pause: the provider is back and asked again
        assert validator.validate(token)["sub"] == "user-1"


def test_discovery_document_naming_another_issuer_is_refused(provider: Provider) -> None:
    provider.advertised_issuer = "http://evil.example"
    validator = OIDCValidator(issuer=provider.issuer, audience="aegis", role_map={})
    with pytest.raises(TokenInvalid, match="issuer mismatch"):
        validator.validate(provider.token(provider.add_key()))


def test_a_discovery_document_that_never_ends_is_cut_off_and_fails_closed(
    provider: Provider,
) -> None:
    token = provider.token(provider.add_key())
    cap = 16 * MAX_DOCUMENT_BYTES  # far past what the validator reads, short of a hung test
    with flooding(start=b'{"jwks_uri": "', cap=cap) as issuer:
        validator = OIDCValidator(issuer=issuer.url, audience="aegis", role_map={})
        with pytest.raises(TokenInvalid, match="discovery failed"):
            validator.validate(token)
        cut_off = issuer.answers(1)

    assert cut_off == [True] and issuer.sent[0] < cap


def test_a_key_set_that_never_ends_is_cut_off_and_fails_closed(provider: Provider) -> None:
    token = provider.token(provider.add_key())
    cap = 16 * MAX_DOCUMENT_BYTES
    with flooding(start=b'{"keys": [', cap=cap) as keys:
        provider.jwks_uri = keys.url + "/jwks"
        validator = OIDCValidator(issuer=provider.issuer, audience="aegis", role_map={})
        with pytest.raises(TokenInvalid, match="key set"):
            validator.validate(token)
        cut_off = keys.answers(1)

    assert cut_off == [True] and keys.sent[0] < cap


@pytest.mark.parametrize("key_set", ["empty", "no keys member"])
def test_a_key_set_without_a_usable_key_is_401_and_audited(
    provider: Provider,
    db_url: str,
    database: Database,
    make_settings: Callable[..., Settings],
    key_set: str,
) -> None:
    """An identity provider whose key set holds no key (all withdrawn, or a JWKS URI answering
    some other JSON object) refuses the token like any other key-set failure: a 500 here was
    neither audited nor counted against the failed-authentication limit."""
    settings = make_settings(
        database_url=db_url, oidc_issuer=provider.issuer, oidc_audience="aegis"
    )
    token = provider.token(provider.add_key())
    provider.keys.clear()
    if key_set == "no keys member":
        provider.add_key()
        provider.jwks_uri = provider.issuer + "/.well-known/openid-configuration"
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == (
        "the identity provider's key set holds no usable key"
    )
    assert len(factories.audit_events(database, "authentication.failed")) == 1


def test_groups_naming_roles_directly_count_and_unknown_groups_give_nothing(
    provider: Provider, validator: OIDCValidator
) -> None:
    token = provider.token(provider.add_key(), groups=["viewer", "wizards", "sre-oncall"])
    assert validator.actor(token).roles == frozenset({"viewer", "operator", "approver"})
    nobody = provider.token(provider.add_key(), groups="wizards")
    assert validator.actor(nobody).roles == frozenset()


def test_one_identity_cannot_approve_its_own_request_under_another_name(
    provider: Provider,
    db_url: str,
    database: Database,
    make_settings: Callable[..., Settings],
) -> None:
    """Four eyes hold per IdP subject: a second token of the same user that names them
    differently (no preferred_username, so only an email) is still the requester."""
    settings = make_settings(
        database_url=db_url,
        executor_backend="local",
        oidc_issuer=provider.issuer,
        oidc_audience="aegis",
        oidc_role_map={"sre-oncall": ["operator", "approver"]},
    )
    kid = provider.add_key()
    as_olivia = {"Authorization": f"Bearer {provider.token(kid)}"}
    by_email = provider.token(kid, preferred_username=None, email="olivia@example.com")
    with (
        TestClient(create_app(settings)) as api,
        TestClient(executor_app(settings), base_url="http://executor") as ex,
    ):
        admin = factories.signed_in(api, database, "admin")
        policy = {
            "id": "scaling",
            "effect": "require_approval",
            "subjects": ["role:operator"],
            "actions": ["scale_deployment"],
            "resources": {"namespaces": ["demo"], "names": ["*"]},
        }
        assert api.post("/api/v1/policy", json=policy, headers=admin).status_code == 201
        action = api.post(
            "/api/v1/actions",
            json={
                "action": "scale_deployment",
                "namespace": "demo",
                "name": "web",
                "params": {"replicas": 5},
                "idempotency_key": "olivia-1",
                "reason": "load",
            },
            headers=as_olivia,
        ).json()
        executor = ExecutorClient(
            "http://executor", settings.secret("executor_hmac_secret"), http=ex
        )
        jobs.tick(database, settings, executor)  # the dry run gives the hash to approve
        pending = api.get(f"/api/v1/actions/{action['id']}", headers=as_olivia).json()
        own = api.post(
            f"/api/v1/actions/{action['id']}/approve",
            json={"approval_hash": pending["approval_hash"]},
            headers={"Authorization": f"Bearer {by_email}"},
        )
    assert pending["status"] == "pending_approval"
    assert own.status_code == 403
    assert own.json()["error"]["code"] == "self_approval_forbidden"


def test_an_idp_subject_of_any_printable_form_is_decided_and_can_be_named_by_a_policy(
    provider: Provider, db_url: str, database: Database, make_settings: Callable[..., Settings]
) -> None:
    """OIDC Core lets ``sub`` be any 255 printable characters (Auth0: ``auth0|5f7c...``). Such
    a user's action requests are decided like anyone's, and a policy can name that user."""
    settings = make_settings(
        database_url=db_url,
        oidc_issuer=provider.issuer,
        oidc_audience="aegis",
        oidc_role_map={"sre-oncall": ["operator"]},
    )
    kid = provider.add_key()
    named, other = "auth0|5f7c1a2b3c4d5e6f", "google-oauth2|10293847 5647"
    with TestClient(create_app(settings)) as api:
        admin = factories.signed_in(api, database, "admin")
        policy = {
            "id": "one-idp-user-restarts",
            "effect": "allow",
            "subjects": [f"user:{named}"],
            "actions": ["restart_deployment"],
            "resources": {"namespaces": ["demo"], "names": ["*"]},
        }
        assert api.post("/api/v1/policy", json=policy, headers=admin).status_code == 201
        answers = [
            api.post(
                "/api/v1/actions",
                json={
                    "action": "restart_deployment",
                    "namespace": "demo",
                    "name": "web",
                    "idempotency_key": f"restart-{n}",
                    "reason": "stuck",
                },
                headers={"Authorization": f"Bearer {provider.token(kid, sub=subject)}"},
            )
            for n, subject in enumerate((named, other))
        ]
    assert [a.status_code for a in answers] == [201, 201]
    assert [(a.json()["status"], a.json()["requested_by"]) for a in answers] == [
        ("approved", named),
        ("denied", other),  # decided (no policy names them), not refused as malformed
    ]


def test_an_idp_admin_with_a_long_subject_can_run_the_safety_drill_and_review_it(
    provider: Provider, db_url: str, make_settings: Callable[..., Settings]
) -> None:
    """A ``sub`` may be 255 characters; every column naming an actor holds that many (on
    PostgreSQL a shorter one refused the admin's drill and review with a 422)."""
    settings = make_settings(
        database_url=db_url,
        oidc_issuer=provider.issuer,
        oidc_audience="aegis",
        oidc_role_map={"sre-oncall": ["admin"]},
    )
    subject = "auth0|" + "7" * 249
    admin = {"Authorization": f"Bearer {provider.token(provider.add_key(), sub=subject)}"}
    with TestClient(create_app(settings)) as api:
        made = api.post("/api/v1/safety/drill", json={"note": "game day 2"}, headers=admin)
        reviewed = api.post(
            f"/api/v1/safety/flags/{made.json().get('id')}/review",
            json={"verdict": "dismissed", "note": "drill"},
            headers=admin,
        )
    assert made.status_code == 201, made.text
    assert reviewed.status_code == 200, reviewed.text
    assert (made.json()["raised_by"], reviewed.json()["reviewed_by"]) == (subject, subject)


@pytest.mark.parametrize(
    "subject",
    [
        "u" * 256,
        "olivia\nadmin",
        "olivia\x85admin",  # NEL, a C1 control and a line break
        "olivia\u2028admin",  # LINE SEPARATOR
        "system\u200b",  # reads as "system": a zero-width space escapes the reserved names
        "\u202eenigne-ia",  # a right-to-left override: displayed as "ai-engine"
    ],
    ids=["too long", "control", "C1 control", "line separator", "zero width", "bidi override"],
)
def test_a_subject_that_cannot_name_a_caller_is_401_in_one_line(
    provider: Provider, db_url: str, make_settings: Callable[..., Settings], subject: str
) -> None:
    settings = make_settings(
        database_url=db_url, oidc_issuer=provider.issuer, oidc_audience="aegis"
    )
    token = provider.token(provider.add_key(), sub=subject)
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == (
        "token subject is not 1 to 255 printable characters"
    )


@pytest.mark.parametrize("alg", [{"name": "RS256"}, ["RS256"]], ids=["object", "list"])
def test_an_algorithm_that_is_not_a_name_is_401_and_audited(
    provider: Provider,
    db_url: str,
    database: Database,
    make_settings: Callable[..., Settings],
    alg: object,
) -> None:
    settings = make_settings(
        database_url=db_url, oidc_issuer=provider.issuer, oidc_audience="aegis"
    )
    header = _b64({"alg": alg, "kid": provider.add_key()})
    token = f"{header}.{_b64({'sub': 'x', 'iss': provider.issuer})}.c2ln"
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"
    assert "not allowed" in response.json()["error"]["message"]
    assert len(factories.audit_events(database, "authentication.failed")) == 1
