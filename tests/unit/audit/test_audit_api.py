"""GET /api/v1/audit: filters, pagination, and who may read."""

from __future__ import annotations

import ast
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text

import aegis
from aegis.audit import service as audit_service
from aegis.audit.schemas import EVENT_TYPES, AuditEventCreate
from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from tests.support import factories
from tests.support.audit import forge_tail


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


def test_an_unknown_type_filter_is_422_naming_the_valid_ones(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    approver = factories.user(database, "approver")
    with TestClient(create_app(make_settings(database_url=db_url))) as client:
        headers = factories.bearer(factories.login(client, approver))
        bogus = client.get("/api/v1/audit", params={"type": "bogus"}, headers=headers)
        never_recorded = client.get(
            "/api/v1/audit", params={"type": "backup.drill"}, headers=headers
        )
    assert bogus.status_code == 422
    error = bogus.json()["error"]
    assert error["code"] == "unknown_audit_type"
    assert "'bogus'" in error["message"] and "\n" not in error["message"]
    assert "auth, policy, action, model, system" in error["message"]
    assert "login.succeeded" in error["message"] and "incident.opened" in error["message"]
    # A type Aegis records, none of which has happened yet, is an empty page.
    assert never_recorded.status_code == 200 and never_recorded.json()["items"] == []


def test_an_event_type_in_the_log_is_a_valid_filter_even_if_no_longer_recorded(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    with database.unit_of_work() as session:  # an entry from an older version, say
        audit_service.record_audit_event(
            session=session, category="system", event_type="legacy.thing", actor="a"
        )
    approver = factories.user(database, "approver")
    with TestClient(create_app(make_settings(database_url=db_url))) as client:
        headers = factories.bearer(factories.login(client, approver))
        found = client.get("/api/v1/audit", params={"type": "legacy.thing"}, headers=headers)
    assert found.status_code == 200
    assert [i["event_type"] for i in found.json()["items"]] == ["legacy.thing"]


def test_every_event_type_aegis_records_is_a_known_filter() -> None:
    """The event types written as literals in the source (``event_type="x.y"``, an ingest's
    ``audit("x.y", ...)``) are all in the list a filter is checked against."""
    recorded: set[str] = set()
    for path in Path(aegis.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            values = [k.value for k in node.keywords if k.arg == "event_type"]
            if isinstance(node.func, ast.Attribute) and node.func.attr == "audit" and node.args:
                values.append(node.args[0])
            for value in values:
                if isinstance(value, ast.JoinedStr):  # f"policy.{change}": listed by hand
                    continue
                recorded.update(
                    part.value
                    for part in ast.walk(value)
                    if isinstance(part, ast.Constant)
                    and isinstance(part.value, str)
                    and "." in part.value
                )
    assert len(recorded) > 20
    assert recorded <= EVENT_TYPES


def test_an_entry_whose_data_is_no_object_is_shown_marked_not_a_500(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    # A forged row (its hash recomputed) must not hide the rest of the page, nor be hidden.
    approver = factories.user(database, "approver")
    seq = forge_tail(database, category="system", event_type="alert.received", data="[1, 2]")
    with TestClient(create_app(make_settings(database_url=db_url))) as client:
        headers = factories.bearer(factories.login(client, approver))
        response = client.get("/api/v1/audit", params={"type": "system"}, headers=headers)
    assert response.status_code == 200
    [item] = [i for i in response.json()["items"] if i["seq"] == seq]
    assert item["data"] == {} and item["data_not_object"] == "[1, 2]"
