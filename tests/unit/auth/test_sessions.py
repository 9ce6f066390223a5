"""Local users, JWT access/refresh tokens, rotation and revocation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from aegis.backend_app import create_app
from aegis.core import metrics
from aegis.core.config import Settings
from aegis.database.core import Database
from tests.support import factories


def test_login_returns_a_bearer_pair_that_opens_the_api(
    client: TestClient, database: Database
) -> None:
    name = factories.user(database, "operator")
    response = client.post(
        "/api/v1/auth/login", json={"username": name, "password": factories.PASSWORD}
    )
    assert response.headers["cache-control"] == "no-store"  # RFC 6749 5.1: tokens never cached
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    me = client.get("/api/v1/auth/me", headers=factories.bearer(tokens))
    assert me.status_code == 200
    assert me.json() == {"name": name, "roles": ["operator"], "kind": "user"}
    assert factories.audit_events(database, "login.succeeded")[-1].actor == name


def test_wrong_password_is_401_and_audited(client: TestClient, database: Database) -> None:
    name = factories.user(database, "viewer")
    response = client.post("/api/v1/auth/login", json={"username": name, "password": "nope"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid username or password"
    failures = factories.audit_events(database, "authentication.failed")
    assert failures and failures[-1].actor == name


def _auth_failures() -> dict[str, float]:
    return {
        sample.labels["reason"]: sample.value
        for family in metrics.AUTH_FAILURES.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_a_failed_login_is_counted_once_by_its_reason(
    client: TestClient, database: Database
) -> None:
    name = factories.user(database, "viewer")
    before = _auth_failures()
    response = client.post("/api/v1/auth/login", json={"username": name, "password": "nope"})
    assert response.status_code == 401
    counted = {r: n - before.get(r, 0) for r, n in _auth_failures().items() if n != before.get(r)}
    assert counted == {"bad_credentials": 1}


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(client: TestClient) -> None:
    response = client.post("/api/v1/auth/login", json={"username": "ghost", "password": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "invalid username or password"


def test_refresh_rotates_and_the_old_refresh_token_is_spent(
    client: TestClient, database: Database
) -> None:
    tokens = factories.login(client, factories.user(database, "viewer"))
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200
    assert rotated.headers["cache-control"] == "no-store"  # RFC 6749 5.1: tokens never cached
    assert rotated.json()["refresh_token"] != tokens["refresh_token"]
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401


def test_reusing_a_spent_refresh_token_revokes_the_whole_family_and_is_audited(
    client: TestClient, database: Database
) -> None:
    tokens = factories.login(client, factories.user(database, "viewer"))
    new = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    ).json()
    client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    # the thief's replay killed the legitimate, newer tokens too
    assert client.get("/api/v1/auth/me", headers=factories.bearer(new)).status_code == 401
    newest = client.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert newest.status_code == 401
    assert factories.audit_events(database, "refresh_token.reused")


def test_logout_ends_the_session_at_once(client: TestClient, database: Database) -> None:
    tokens = factories.login(client, factories.user(database, "viewer"))
    assert client.post("/api/v1/auth/logout", headers=factories.bearer(tokens)).status_code == 204
    assert client.get("/api/v1/auth/me", headers=factories.bearer(tokens)).status_code == 401
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401


def test_changing_jwt_secret_invalidates_access_tokens(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    name = factories.user(database, "viewer")
    with TestClient(create_app(make_settings(database_url=db_url))) as old:
        tokens = factories.login(old, name)
    rotated = make_settings(database_url=db_url, jwt_secret=SecretStr("n" * 48))
    with TestClient(create_app(rotated)) as new:
        response = new.get("/api/v1/auth/me", headers=factories.bearer(tokens))
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "token signature invalid"


def test_rotation_window_keeps_old_tokens_valid(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    name = factories.user(database, "viewer")
    first = make_settings(database_url=db_url)
    with TestClient(create_app(first)) as old:
        tokens = factories.login(old, name)
    window = make_settings(
        database_url=db_url,
        jwt_secret=SecretStr("n" * 48),
        jwt_secret_previous=first.jwt_secret,
        jwt_refresh_secret=SecretStr("m" * 48),
        jwt_refresh_secret_previous=first.jwt_refresh_secret,
    )
    with TestClient(create_app(window)) as new:
        assert new.get("/api/v1/auth/me", headers=factories.bearer(tokens)).status_code == 200
        pair = new.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert pair.status_code == 200
        # the new pair is signed with the new secret
        header_alg = jwt.get_unverified_header(pair.json()["access_token"])["alg"]
        assert header_alg == "HS256"
        jwt.decode(
            pair.json()["access_token"], "n" * 48, algorithms=["HS256"], audience="aegis-api"
        )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "token issuer not trusted"),
        (
            jwt.encode({"iss": "aegis", "sub": "x"}, "wrong-secret-" + "x" * 32, algorithm="HS256"),
            "token signature invalid",
        ),
    ],
)
def test_bad_tokens_are_401_with_one_line_reason(
    client: TestClient, database: Database, token: str, reason: str
) -> None:
    response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == reason
    assert factories.audit_events(database, "authentication.failed")


def test_expired_access_token_is_refused(client: TestClient, settings: Settings) -> None:
    claims: dict[str, Any] = {
        "iss": "aegis",
        "aud": "aegis-api",
        "sub": "a",
        "sid": "s",
        "jti": "j",
        "typ": "access",
        "iat": 1,
        "nbf": 1,
        "exp": 2,
    }
    token = jwt.encode(claims, settings.secret("jwt_secret"), algorithm="HS256")
    response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.json()["error"]["message"] == "token expired"


def test_wrong_role_is_403_and_audited(client: TestClient, database: Database) -> None:
    tokens = factories.login(client, factories.user(database, "viewer"))
    response = client.get("/api/v1/users", headers=factories.bearer(tokens))
    assert response.status_code == 403
    assert factories.audit_events(database, "access.denied")


def test_refusals_on_a_long_path_are_401_and_403_and_audited(
    client: TestClient, database: Database
) -> None:
    """A path longer than an audit record's resource (512 characters) is still refused with
    the 401 or 403 and audited, its resource cut to fit; it was a 500 and left no record."""
    path = f"/api/v1/users/{'x' * 600}/roles"
    anonymous = client.put(path, json={"roles": ["viewer"]})
    viewer = client.put(
        path,
        json={"roles": ["viewer"]},
        headers=factories.bearer(factories.login(client, factories.user(database, "viewer"))),
    )
    assert (anonymous.status_code, viewer.status_code) == (401, 403)
    for event_type in ("authentication.failed", "access.denied"):
        resource = factories.audit_events(database, event_type)[-1].resource
        assert resource.startswith(f"PUT /api/v1/users/{'x' * 100}") and len(resource) == 512


def test_disabled_user_cannot_log_in_and_loses_sessions(
    client: TestClient, database: Database
) -> None:
    from aegis.auth import service

    name = factories.user(database, "viewer")
    tokens = factories.login(client, name)
    with database.unit_of_work() as session:
        service.set_disabled(session=session, username=name, disabled=True, actor="test")
    assert client.get("/api/v1/auth/me", headers=factories.bearer(tokens)).status_code == 401
    response = client.post(
        "/api/v1/auth/login", json={"username": name, "password": factories.PASSWORD}
    )
    assert response.status_code == 401


def test_admin_creates_users_over_the_api_and_it_is_audited(
    client: TestClient, database: Database
) -> None:
    admin = factories.login(client, factories.user(database, "admin"))
    response = client.post(
        "/api/v1/users",
        headers=factories.bearer(admin),
        json={"username": "carol", "password": "x" * 16, "roles": ["approver", "operator"]},
    )
    assert response.status_code == 201
    assert response.json()["roles"] == ["approver", "operator"]
    assert factories.audit_events(database, "user.created")[-1].resource == "user:carol"


def test_service_key_identifies_the_ai_engine_principal(
    client: TestClient, settings: Settings
) -> None:
    ok = client.get("/api/v1/auth/me", headers={"X-API-Key": settings.secret("api_key")})
    bad = client.get("/api/v1/auth/me", headers={"X-API-Key": "guess"})
    # the engine principal holds no human role, so /me (viewer+) is forbidden, not unauthorised
    assert ok.status_code == 403
    assert bad.status_code == 401
