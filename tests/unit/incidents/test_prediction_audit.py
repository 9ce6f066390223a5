"""What the AI engine said about an incident, or why it said nothing, is in the audit chain:
which model (name, version, digest) recommended what, and when."""

from __future__ import annotations

import http.server
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.engine.app import create_app as engine_app
from aegis.engine.model import train
from aegis.engine.state import ModelHolder
from aegis.incidents import jobs
from aegis.incidents.models import Incident
from tests.support import factories
from tests.support.alerts import alert, deliver
from tests.support.races import race
from tests.support.services import free_port, serving

STORED = "incident.prediction_stored"
UNAVAILABLE = "incident.prediction_unavailable"


def _raise(api: TestClient, settings: Settings, database: Database) -> dict[str, str]:
    """An incident about a crash-looping pod (the engine recommends deleting it); an admin's
    headers to read it and the audit log with."""
    raised = alert("KubePodCrashLooping", namespace="demo", severity="critical", pod="web-1")
    deliver(api, settings.secret("alert_webhook_token"), raised)
    return factories.signed_in(api, database, "admin")


def _audited(api: TestClient, headers: dict[str, str], event_type: str) -> list[dict[str, Any]]:
    found = api.get("/api/v1/audit", params={"type": event_type}, headers=headers)
    assert found.status_code == 200, found.text
    items: list[dict[str, Any]] = found.json()["items"]
    return items


def test_a_stored_prediction_is_audited_with_its_model_and_top_recommendation(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    settings = make_settings(
        database_url=db_url, ai_engine_enabled=True, ai_engine_url="http://engine"
    )
    holder = ModelHolder()
    holder.swap(train())
    with (
        TestClient(create_app(settings)) as api,
        TestClient(engine_app(settings, holder=holder), base_url="http://engine") as engine,
    ):
        admin = _raise(api, settings, database)
        assert jobs.predict_pending(database, settings, engine) == 1
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        entries = _audited(api, admin, STORED)

    assert incident["prediction_status"] == "ok", incident["prediction_note"]
    model, top = incident["prediction"]["model"], incident["prediction"]["recommendations"][0]
    (entry,) = entries
    assert (entry["actor"], entry["resource"]) == ("ai-engine", f"incident:{incident['id']}")
    assert entry["data"] == {  # no log lines, metric series or explanations: kept small
        "incident_id": incident["id"],
        "model_name": model["name"],
        "model_version": model["version"],
        "model_digest": model["digest"],
        "severity": incident["severity"],
        "action": top["action"],
        "confidence": top["confidence"],
    }
    assert model["digest"] and top["action"]


@pytest.mark.parametrize("engine", ["disabled", "unreachable"])
def test_an_incident_kept_without_a_prediction_is_audited_with_the_reason(
    make_settings: Callable[..., Settings], db_url: str, database: Database, engine: str
) -> None:
    settings = make_settings(
        database_url=db_url,
        ai_engine_enabled=engine != "disabled",
        ai_engine_url=f"http://127.0.0.1:{free_port()}",
    )
    with TestClient(create_app(settings)) as api:
        admin = _raise(api, settings, database)
        assert jobs.predict_pending(database, settings) == 1
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        entries = _audited(api, admin, UNAVAILABLE)
        stored = _audited(api, admin, STORED)

    (entry,) = entries
    assert entry["resource"] == f"incident:{incident['id']}"
    assert entry["outcome"] == incident["prediction_status"]
    assert entry["data"] == {
        "incident_id": incident["id"],
        "status": incident["prediction_status"],
        "reason": incident["prediction_note"],
    }
    assert incident["prediction_status"] == ("disabled" if engine == "disabled" else "unavailable")
    assert stored == []


def test_a_backend_that_lost_its_claim_audits_nothing(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """Only what is stored is audited: the answer of a backend whose claim was taken over is
    dropped, and so is its record."""
    settings = make_settings(database_url=db_url, ai_engine_enabled=False)
    with TestClient(create_app(settings)) as api:
        admin = _raise(api, settings, database)
        incident_id = api.get("/api/v1/incidents", headers=admin).json()["items"][0]["id"]
        slow = jobs._claim(database, incident_id)
        assert slow is not None
        with database.unit_of_work() as session:  # its lease runs out
            incident = session.get_one(Incident, incident_id)
            assert incident.prediction_claimed_at is not None
            incident.prediction_claimed_at -= timedelta(seconds=jobs.PREDICTION_LEASE_S + 1)
        other = jobs._claim(database, incident_id)
        assert other is not None

        assert not jobs._store(database, slow, None, "unavailable", "the slow backend's")
        assert jobs._store(database, other, None, "unavailable", "the other backend's")
        entries = _audited(api, admin, UNAVAILABLE)

    assert [e["data"]["reason"] for e in entries] == ["the other backend's"]


def test_an_odd_but_valid_answer_is_stored_and_audited_with_what_can_be_kept(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """A confidence the backend reads as a number though JSON has none (``"NaN"``) and a model
    name that is not text: the audit chain takes neither, and refusing the record would keep
    the prediction from being stored (the incident left claimed, the pass ended)."""
    answer = json.dumps(
        {
            "recommendations": [{"action": "restart_deployment", "confidence": "NaN"}],
            "model": {"name": ["not", "text"], "version": "1", "digest": "sha256:abc"},
        }
    ).encode()

    class Engine(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    with serving(Engine) as url:
        settings = make_settings(database_url=db_url, ai_engine_enabled=True, ai_engine_url=url)
        with TestClient(create_app(settings)) as api:
            admin = _raise(api, settings, database)
            assert jobs.predict_pending(database, settings) == 1
            incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
            (entry,) = _audited(api, admin, STORED)

    assert incident["prediction_status"] == "ok"
    assert entry["data"] == {
        "incident_id": incident["id"],
        "model_name": "",
        "model_version": "1",
        "model_digest": "sha256:abc",
        "severity": "critical",
        "action": "restart_deployment",
        "confidence": None,
    }


def test_an_incident_resolved_before_it_was_asked_about_is_audited_as_skipped(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """It is kept without a prediction like any other: the chain says so, and why."""
    settings = make_settings(database_url=db_url, ai_engine_enabled=False)
    with TestClient(create_app(settings)) as api:
        admin = _raise(api, settings, database)
        resolved = alert(
            "KubePodCrashLooping",
            status="resolved",
            namespace="demo",
            severity="critical",
            pod="web-1",
        )
        deliver(api, settings.secret("alert_webhook_token"), resolved)
        assert jobs.predict_pending(database, settings) == 0
        assert jobs.predict_pending(database, settings) == 0  # a second pass records nothing
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        entries = _audited(api, admin, UNAVAILABLE)

    assert incident["prediction_status"] == "skipped"
    (entry,) = entries
    assert (entry["actor"], entry["resource"]) == ("ai-engine", f"incident:{incident['id']}")
    assert entry["outcome"] == "skipped"
    assert entry["data"] == {
        "incident_id": incident["id"],
        "status": "skipped",
        "reason": incident["prediction_note"],
    }


def _resolved_storm(api: TestClient, settings: Settings, count: int) -> None:
    """``count`` incidents (one per deployment) that resolve before anyone asks about them."""
    for status in ("firing", "resolved"):
        for i in range(count):
            raised = alert("HighErrorRate", status=status, namespace="demo", deployment=f"web-{i}")
            deliver(api, settings.secret("alert_webhook_token"), raised)


def test_a_resolved_storm_is_skipped_and_audited_a_batch_a_pass(
    make_settings: Callable[..., Settings],
    db_url: str,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs, "SKIP_BATCH", 2)
    settings = make_settings(database_url=db_url, ai_engine_enabled=False)
    with TestClient(create_app(settings)) as api:
        admin = factories.signed_in(api, database, "admin")
        _resolved_storm(api, settings, 3)
        jobs.predict_pending(database, settings)
        first = _audited(api, admin, UNAVAILABLE)
        jobs.predict_pending(database, settings)
        both = _audited(api, admin, UNAVAILABLE)
        incidents = api.get("/api/v1/incidents", headers=admin).json()["items"]

    assert len(first) == 2
    assert sorted(e["data"]["incident_id"] for e in both) == sorted(i["id"] for i in incidents)
    assert {i["prediction_status"] for i in incidents} == {"skipped"}


def test_two_backends_skipping_at_once_audit_each_incident_once(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """The second backend's pass runs while the first one's skip is uncommitted: it waits, then
    finds nothing left to skip (without re-reading the rows it would mark and audit them again)."""
    settings = make_settings(database_url=db_url, ai_engine_enabled=False)
    with TestClient(create_app(settings)) as api:
        admin = factories.signed_in(api, database, "admin")
        _resolved_storm(api, settings, 2)
        with database.unit_of_work() as session:
            jobs._skip_resolved(session)
            second = race(lambda: jobs.predict_pending(database, settings))
        assert second.done() == 0
        entries = _audited(api, admin, UNAVAILABLE)
        incidents = api.get("/api/v1/incidents", headers=admin).json()["items"]

    assert sorted(e["data"]["incident_id"] for e in entries) == sorted(i["id"] for i in incidents)
    assert len(incidents) == 2
