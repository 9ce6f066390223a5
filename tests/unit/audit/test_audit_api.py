"""GET /api/v1/audit: filters, pagination, and who may read."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from tests.support import factories


def test_approver_pages_through_filtered_entries(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    approver = factories.user(database, "approver")
    viewer = factories.user(database, "viewer")
    with TestClient(create_app(make_settings(database_url=db_url))) as client:
        headers = factories.bearer(factories.login(client, approver))
        factories.login(client, viewer)
        first = client.get(
            "/api/v1/audit", params={"type": "login.succeeded", "limit": 1}, headers=headers
        ).json()
        second = client.get(
            "/api/v1/audit",
            params={"type": "login.succeeded", "limit": 1, "cursor": first["next_cursor"]},
            headers=headers,
        ).json()
        by_actor = client.get(
            "/api/v1/audit", params={"actor": viewer, "type": "auth"}, headers=headers
        ).json()
        denied = client.get(
            "/api/v1/audit", headers=factories.bearer(factories.login(client, viewer))
        )
    assert [i["actor"] for i in first["items"] + second["items"]] == [approver, viewer]
    assert second["next_cursor"] is None
    assert {i["actor"] for i in by_actor["items"]} == {viewer}
    assert denied.status_code == 403
