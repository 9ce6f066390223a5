"""The backend asks the real engine about incidents; recommendations go through policy;
without the engine, incidents are kept and say why (fallback mode)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.engine.app import create_app as engine_app
from aegis.engine.model import train
from aegis.engine.state import ModelHolder
from aegis.incidents import jobs
from tests.support import factories
from tests.support.alerts import alert, payload
from tests.support.services import free_port

ALLOW_AI = {
    "id": "ai-restarts",
    "effect": "allow",
    "subjects": ["principal:ai-engine"],
    "actions": ["*"],
    "resources": {"namespaces": ["demo"], "names": ["*"]},
}


def _seed(api: TestClient, settings: Settings, database: Database, name: str) -> dict[str, str]:
    admin = factories.bearer(factories.login(api, factories.user(database, "admin")))
    api.post("/api/v1/policy", json=ALLOW_AI, headers=admin)
    api.post(
        "/api/v1/alerts/alertmanager",
        json=payload(alert(name, namespace="demo", deployment="web", severity="critical")),
        headers={"Authorization": f"Bearer {settings.secret('alert_webhook_token')}"},
    )
    return admin


def test_incident_gets_a_prediction_and_the_recommendation_becomes_an_action(
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
        admin = _seed(api, settings, database, "KubePodCrashLooping")
        assert jobs.predict_pending(database, settings, engine) == 1
        incident: dict[str, Any] = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        actions = api.get("/api/v1/actions", headers=admin).json()["items"]
    assert incident["prediction_status"] == "ok", incident["prediction_note"]
    prediction = incident["prediction"]
    assert prediction["recommendations"] and prediction["model"]["digest"]
    assert len(actions) == 1
    action = actions[0]
    assert action["requested_by"] == "ai-engine"
    assert action["decision"] == "allow"
    assert action["model_digest"] == prediction["model"]["digest"][:128]
    assert action["action"] == prediction["recommendations"][0]["action"]
    assert action["confidence"] == prediction["recommendations"][0]["confidence"]


def test_without_the_engine_incidents_are_kept_and_say_why(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    down = make_settings(
        database_url=db_url, ai_engine_enabled=True, ai_engine_url=f"http://127.0.0.1:{free_port()}"
    )
    with TestClient(create_app(down)) as api:
        admin = _seed(api, down, database, "HighErrorRate")
        jobs.predict_pending(database, down)
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
    assert incident["prediction_status"] == "unavailable"
    assert "stored without a prediction" in incident["prediction_note"]


def test_engine_calls_can_be_switched_off(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    off = make_settings(database_url=db_url, ai_engine_enabled=False)
    with TestClient(create_app(off)) as api:
        admin = _seed(api, off, database, "HighErrorRate")
        jobs.predict_pending(database, off)
        incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
    assert incident["prediction_status"] == "disabled"
