"""GET /api/v1/audit: filters, pagination, and who may read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import text

from aegis.audit import service as audit_service
from aegis.audit.schemas import AuditEventCreate
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


def test_since_is_an_instant_whatever_its_offset_or_the_database_time_zone(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """An entry at 16:00 UTC is after 17:00+02:00 and after a plain 15:00 (Aegis's times are
    UTC), and before 18:30+02:00 and a plain 16:30, on SQLite (which keeps a time's digits, not
    its offset) and on a PostgreSQL server whose time zone is not UTC."""
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            name = database.engine.url.database
            conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Tokyo'"))
        database.engine.dispose()  # new connections take the database's time zone
    approver = factories.user(database, "approver")
    with database.unit_of_work() as session:
        audit_service.append(
            session=session,
            events=[
                AuditEventCreate(
                    category="system",
                    event_type="test.timed",
                    actor="t",
                    created_at=datetime(2026, 11, 23, 16, 0, tzinfo=UTC),
                )
            ],
        )
    with TestClient(create_app(make_settings(database_url=db_url))) as client:
        headers = factories.bearer(factories.login(client, approver))

        def found(since: str) -> int:
            response = client.get(
                "/api/v1/audit", params={"type": "test.timed", "since": since}, headers=headers
            )
            assert response.status_code == 200, response.text
            return len(response.json()["items"])

        counts = {
            since: found(since)
            for since in (
                "2026-11-23T17:00:00+02:00",
                "2026-11-23T15:00:00",
                "2026-11-23T18:30:00+02:00",
                "2026-11-23T16:30:00",
            )
        }
    assert counts == {
        "2026-11-23T17:00:00+02:00": 1,
        "2026-11-23T15:00:00": 1,
        "2026-11-23T18:30:00+02:00": 0,
        "2026-11-23T16:30:00": 0,
    }
