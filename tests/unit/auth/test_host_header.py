"""A request's ``Host`` header never becomes a URL the API sends a client to."""

from __future__ import annotations

from fastapi.testclient import TestClient
from starlette.routing import Route

from aegis.database.core import Database
from tests.support import factories


def test_a_trailing_slash_is_404_not_a_redirect_to_the_host_the_client_named(
    client: TestClient,
) -> None:
    # Starlette would answer 307 with an absolute Location built from the Host header: a shared
    # cache or a proxy passing Host through would send users to a host an attacker names.
    response = client.get(
        "/api/v1/incidents/", headers={"host": "evil.example"}, follow_redirects=False
    )
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["error"]["code"] == "not_found"


def test_the_route_without_the_slash_still_answers(client: TestClient, database: Database) -> None:
    tokens = factories.login(client, factories.user(database, "viewer"))
    assert client.get("/api/v1/incidents", headers=factories.bearer(tokens)).status_code == 200


def test_no_route_is_declared_with_a_trailing_slash(client: TestClient) -> None:
    # with redirects off, a route declared as "/x/" would only answer at "/x/"
    paths = [r.path for r in client.app.routes if isinstance(r, Route)]  # type: ignore[attr-defined]
    assert [p for p in paths if p != "/" and p.endswith("/")] == []
