"""Alertmanager webhooks become deduplicated alerts grouped into incidents."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from aegis.audit import verify
from aegis.audit.models import AuditEntry
from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.incidents import service
from aegis.incidents.models import Alert, Incident
from aegis.incidents.schemas import IngestResult, WebhookPayload
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
    viewer = factories.signed_in(client, database, "viewer")
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
    hook({**alert("A"), "startsAt": "2026-11-23T10:30:00Z"})  # fires again after its end
    statuses = sorted(i["status"] for i in _incidents(client, database))  # type: ignore[type-var]
    assert statuses == ["open", "resolved"]


def test_a_late_copy_of_a_firing_notification_does_not_reopen_a_resolved_alert(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    """An Alertmanager peer's retry of the firing notification arrives after the other peer's
    resolution: its startsAt is before the resolution's endsAt, it is the same firing."""
    hook(alert("A"))
    hook(alert("A", status="resolved"))
    late = hook(alert("A"))
    assert (late["new_alerts"], late["duplicates"]) == (0, 1)
    statuses = [i["status"] for i in _incidents(client, database)]
    assert statuses == ["resolved"]


def test_a_late_copy_of_a_resolution_does_not_resolve_the_alert_firing_again(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    hook(alert("A"))
    hook(alert("A", status="resolved"))
    hook({**alert("A"), "startsAt": "2026-11-23T10:30:00Z"})
    late = hook(alert("A", status="resolved"))  # ended 10:05, before it fired again
    assert (late["resolved_alerts"], late["duplicates"]) == (0, 1)
    statuses = sorted(i["status"] for i in _incidents(client, database))  # type: ignore[type-var]
    assert statuses == ["open", "resolved"]


def test_a_resolution_that_overtakes_its_firing_is_kept_and_the_late_firing_opens_nothing(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    """Alertmanager may deliver the resolution (a retry that won) before the firing: the alert
    fired and ended, so the workload shows a resolved incident, and the firing that arrives
    afterwards (started before that end) does not open one that nothing would ever resolve."""
    first = hook(alert("A", status="resolved"))
    assert (first["new_alerts"], first["resolved_alerts"], first["duplicates"]) == (1, 1, 0)
    late = hook(alert("A"))
    assert (late["new_alerts"], late["duplicates"]) == (0, 1)
    with database.unit_of_work() as session:
        types = [e.event_type for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    assert types == ["incident.opened", "alert.received", "alert.resolved", "incident.resolved"]
    (incident,) = _incidents(client, database)
    assert incident["status"] == "resolved"
    viewer = factories.signed_in(client, database, "viewer")
    detail = client.get(f"/api/v1/incidents/{incident['id']}", headers=viewer).json()
    assert [(a["alertname"], a["status"]) for a in detail["alerts"]] == [("A", "resolved")]


def test_a_resolution_that_overtakes_its_firing_joins_the_workloads_open_incident(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    hook(alert("B"))
    hook(alert("A", status="resolved"))
    hook(alert("A"))
    (incident,) = _incidents(client, database)
    assert incident["status"] == "open"  # B still fires
    hook(alert("B", status="resolved"))
    (incident,) = _incidents(client, database)
    assert incident["status"] == "resolved"


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
    viewer = factories.signed_in(client, database, "viewer")
    detail = client.get(f"/api/v1/incidents/{incident_id}", headers=viewer).json()
    assert sorted(a["alertname"] for a in detail["alerts"]) == ["A", "B"]
    assert client.get("/api/v1/incidents/99999", headers=viewer).status_code == 404


@pytest.mark.parametrize("incident_id", [2**31 - 1, 2**31, 2**63 - 1])
def test_an_id_past_the_column_is_not_found_and_a_cursor_past_it_pages_from_the_newest(
    hook: Callable[..., dict[str, object]],
    client: TestClient,
    database: Database,
    incident_id: int,
) -> None:
    """Incident ids are 32-bit: a larger one cannot exist, on PostgreSQL (which refused to
    compare it, a 422) as on SQLite; a cursor beyond every id starts from the newest."""
    hook(alert("A"))
    viewer = factories.signed_in(client, database, "viewer")
    response = client.get(f"/api/v1/incidents/{incident_id}", headers=viewer)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "incident_not_found"
    page = client.get("/api/v1/incidents", params={"cursor": incident_id}, headers=viewer)
    assert page.status_code == 200
    assert [i["title"] for i in page.json()["items"]] == ["A"]


def test_a_nul_character_in_an_alert_is_kept_as_a_replacement_character(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    # PostgreSQL text and JSONB cannot hold NUL: the alert is stored, not refused or lost
    sent = alert("Odd\u0000Name", pod="web-1\u0000")
    sent["annotations"]["description"] = "before\u0000after"
    incident_id = hook(sent)["incidents"][0]  # type: ignore[index]
    viewer = factories.signed_in(client, database, "viewer")
    stored = client.get(f"/api/v1/incidents/{incident_id}", headers=viewer).json()["alerts"][0]
    assert stored["alertname"] == "Odd\ufffdName"
    assert stored["labels"]["pod"] == "web-1\ufffd"
    assert stored["annotations"]["description"] == "before\ufffdafter"


def test_a_lone_surrogate_in_an_alert_is_kept_as_a_replacement_character(
    client: TestClient, settings: Settings, database: Database
) -> None:
    """JSON may escape half of a surrogate pair ("\\ud800"), which no database text can hold
    (nor hashed into the workload's key): the webhook answered 500 instead of storing the
    alert or refusing it."""
    sent = alert("Odd", pod="web-1")
    sent["annotations"]["description"] = "before after"
    body = json.dumps(payload(sent))
    body = body.replace("Odd", "Odd\\ud800").replace("web-1", "\\udfffweb-1")
    body = body.replace("before after", "before \\ud83d after")
    headers = {
        "Authorization": f"Bearer {settings.secret('alert_webhook_token')}",
        "Content-Type": "application/json",
    }
    response = client.post("/api/v1/alerts/alertmanager", content=body, headers=headers)
    assert response.status_code == 200, response.text
    viewer = factories.signed_in(client, database, "viewer")
    incident_id = response.json()["incidents"][0]
    detail = client.get(f"/api/v1/incidents/{incident_id}", headers=viewer).json()
    stored = detail["alerts"][0]
    assert detail["title"] == stored["alertname"] == "Odd\ufffd"
    assert stored["labels"]["pod"] == "\ufffdweb-1"
    assert stored["annotations"]["description"] == "before \ufffd after"


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


@pytest.mark.parametrize("key_locks", ["per key", "one exclusive lock"])
def test_a_notification_delivered_twice_at_once_is_one_alert_in_one_incident(
    database: Database, monkeypatch: pytest.MonkeyPatch, key_locks: str
) -> None:
    """An Alertmanager HA pair sends the same notification from both peers at the same moment:
    every delivery succeeds, one stores the alert, the others count as duplicates — with the
    per-fingerprint/per-workload locks, and with the single lock a large webhook takes."""
    if key_locks == "one exclusive lock":
        monkeypatch.setattr(service, "MAX_KEY_LOCKS", 1)
    body = WebhookPayload.model_validate(payload(alert("A"), alert("B", deployment="api")))
    copies = 4
    start = threading.Barrier(copies)

    def deliver() -> IngestResult:
        start.wait()
        with database.unit_of_work() as session:
            return service.ingest(session=session, payload=body)

    with ThreadPoolExecutor(copies) as pool:
        results = list(pool.map(lambda _: deliver(), range(copies)))
    assert sorted(r.new_alerts for r in results) == [0] * (copies - 1) + [2]
    assert sum(r.duplicates for r in results) == 2 * (copies - 1)
    with database.unit_of_work() as session:
        stored = session.scalars(select(Alert)).all()
        assert sorted(a.received_count for a in stored) == [copies, copies]
        assert len(session.scalars(select(Incident)).all()) == 2
        assert verify.verify(session=session, store=None, public_key=None).problems == []


def test_repeats_count_and_a_resolved_alert_keeps_its_end(
    hook: Callable[..., dict[str, object]], database: Database
) -> None:
    hook(alert("A"), alert("B"))
    hook(alert("A", status="resolved"))
    hook(alert("A", status="resolved"), alert("B"))
    with database.unit_of_work() as session:
        by_name = {a.alertname: a for a in session.scalars(select(Alert))}
        incident = session.scalars(select(Incident)).one()
    assert (by_name["A"].status, by_name["A"].received_count) == ("resolved", 3)
    assert by_name["A"].ends_at is not None and by_name["A"].ends_at.minute == 5
    assert (by_name["B"].status, by_name["B"].received_count) == ("firing", 2)
    assert incident.status == "open"


def test_one_webhook_can_resolve_several_incidents(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    hook(alert("A"), alert("B", deployment="api"), alert("C", deployment="db"))
    result = hook(alert("A", status="resolved"), alert("B", deployment="api", status="resolved"))
    assert result["resolved_alerts"] == 2
    statuses = {i["workload"]: i["status"] for i in _incidents(client, database)}
    assert statuses == {"web": "resolved", "api": "resolved", "db": "open"}


def test_a_label_longer_than_its_column_does_not_refuse_the_webhook(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    """The other alerts of the webhook are not lost with it (Alertmanager would retry the whole
    group, and be refused again): the incident shows the value cut, the alert keeps it whole."""
    long_name = "w" * 300
    result = hook(alert("A" * 600, deployment=long_name), alert("B", deployment="api"))
    assert result["new_alerts"] == 2
    viewer = factories.signed_in(client, database, "viewer")
    incidents = {i["workload"]: i for i in _incidents(client, database)}
    long_one = incidents[long_name[:256]]
    assert long_one["title"] == "A" * 512 and "api" in incidents
    detail = client.get(f"/api/v1/incidents/{long_one['id']}", headers=viewer).json()
    assert detail["alerts"][0]["labels"]["deployment"] == long_name
    assert detail["alerts"][0]["alertname"] == "A" * 256


def test_times_sent_with_a_utc_offset_keep_their_instant(
    hook: Callable[..., dict[str, object]], client: TestClient, database: Database
) -> None:
    """Alertmanager writes times with its host's offset. On SQLite, which keeps a time's digits
    and drops its offset, 12:00+02:00 came back as 12:00 UTC: the resolution that ended at
    12:05+02:00 (10:05 UTC) then read as older than the firing, a late copy, and the incident
    never resolved."""
    firing = {**alert("A"), "startsAt": "2026-11-23T12:00:00+02:00"}
    resolved = {**alert("A", status="resolved"), "startsAt": "2026-11-23T12:00:00+02:00"}
    resolved["endsAt"] = "2026-11-23T12:05:00+02:00"
    incident_id = hook(firing)["incidents"][0]  # type: ignore[index]
    assert hook(resolved)["resolved_alerts"] == 1
    viewer = factories.signed_in(client, database, "viewer")
    detail = client.get(f"/api/v1/incidents/{incident_id}", headers=viewer).json()
    assert detail["status"] == "resolved"
    assert detail["alerts"][0]["starts_at"].removesuffix("Z") == "2026-11-23T10:00:00"
    assert detail["alerts"][0]["ends_at"].removesuffix("Z") == "2026-11-23T10:05:00"


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_time_beyond_the_representable_years_in_utc_is_422(
    client: TestClient, settings: Settings, when: str
) -> None:
    headers = {"Authorization": f"Bearer {settings.secret('alert_webhook_token')}"}
    body = payload({**alert(), "startsAt": when})
    response = client.post("/api/v1/alerts/alertmanager", json=body, headers=headers)
    assert response.status_code == 422
    assert "alerts.0.startsAt" in response.json()["error"]["message"]
