"""Alertmanager webhooks become deduplicated alerts grouped into incidents."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from aegis.audit.models import AuditEntry
from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from tests.support import factories
from tests.support.alerts import alert, payload


@pytest.fixture
def settings(make_settings: Callable[..., Settings], db_url: str) -> Settings:
    return make_settings(database_url=db_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def hook(client: TestClient, settings: Settings) -> Callable[..., dict[str, object]]:
    headers = {"Authorization": f"Bearer {settings.secret('alert_webhook_token')}"}

    def post(*alerts: dict[str, object]) -> dict[str, object]:
        response = client.post(
            "/api/v1/alerts/alertmanager", json=payload(*alerts), headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    return post


def _incidents(client: TestClient, database: Database) -> list[dict[str, object]]:
    viewer = factories.bearer(factories.login(client, factories.user(database, "viewer")))
    items: list[dict[str, object]] = client.get("/api/v1/incidents", headers=viewer).json()["items"]
    return items


def test_alerts_about_one_workload_group_into_one_incident(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    first = hook(alert("HighErrorRate"), alert("HighLatency", severity="critical"))
    assert first["new_alerts"] == 2 and len(first["incidents"]) == 1  # type: ignore[arg-type]
    hook(alert("PodCrashLooping", deployment="api"))
    incidents = _incidents(client, database)
    assert len(incidents) == 2
    web = next(i for i in incidents if i["workload"] == "web")
    assert web["severity"] == "critical" and web["status"] == "open"
    assert web["prediction_status"] == "pending"


def test_repeated_notifications_are_deduplicated_by_fingerprint(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    hook(alert())
    again = hook(alert())
    assert (again["new_alerts"], again["duplicates"]) == (0, 1)
    assert len(_incidents(client, database)) == 1


def test_incident_resolves_when_all_its_alerts_resolve(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    hook(alert("A"), alert("B"))
    hook(alert("A", status="resolved"))
    assert _incidents(client, database)[0]["status"] == "open"
    result = hook(alert("B", status="resolved"))
    assert result["resolved_alerts"] == 1
    incident = _incidents(client, database)[0]
    assert incident["status"] == "resolved" and incident["resolved_at"]


def test_a_refiring_alert_opens_a_new_incident_after_resolution(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    hook(alert("A"))
    hook(alert("A", status="resolved"))
    hook(alert("A"))
    statuses = sorted(i["status"] for i in _incidents(client, database))  # type: ignore[type-var]
    assert statuses == ["open", "resolved"]


def test_every_change_is_audited(
    hook: Callable[..., dict[str, object]], database: Database
) -> None:
    hook(alert("A"))
    hook(alert("A", status="resolved"))
    with database.unit_of_work() as session:
        types = [e.event_type for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    assert types == ["incident.opened", "alert.received", "alert.resolved", "incident.resolved"]


def test_incident_detail_lists_its_alerts(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    incident_id = hook(alert("A"), alert("B"))["incidents"][0]  # type: ignore[index]
    viewer = factories.bearer(factories.login(client, factories.user(database, "viewer")))
    detail = client.get(f"/api/v1/incidents/{incident_id}", headers=viewer).json()
    assert sorted(a["alertname"] for a in detail["alerts"]) == ["A", "B"]
    assert client.get("/api/v1/incidents/99999", headers=viewer).status_code == 404


def test_basic_auth_with_the_token_as_password_is_accepted(
    client: TestClient, settings: Settings
) -> None:
    creds = base64.b64encode(f"alertmanager:{settings.secret('alert_webhook_token')}".encode())
    response = client.post(
        "/api/v1/alerts/alertmanager",
        json=payload(alert()),
        headers={"Authorization": f"Basic {creds.decode()}"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic !!!"])
def test_webhook_without_the_token_is_401_and_audited(
    client: TestClient, database: Database, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.post("/api/v1/alerts/alertmanager", json=payload(alert()), headers=headers)
    assert response.status_code == 401
    with database.unit_of_work() as session:
        failed = session.scalars(
            select(AuditEntry).where(AuditEntry.event_type == "authentication.failed")
        ).all()
    assert failed


@pytest.mark.parametrize(
    "body",
    [
        {"status": "firing", "alerts": []},
        {"status": "burning", "alerts": [alert()]},
        {"status": "firing", "alerts": [{**alert(), "fingerprint": ""}]},
    ],
)
def test_malformed_payloads_are_422(
    client: TestClient, settings: Settings, body: dict[str, object]
) -> None:
    headers = {"Authorization": f"Bearer {settings.secret('alert_webhook_token')}"}
    response = client.post("/api/v1/alerts/alertmanager", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
