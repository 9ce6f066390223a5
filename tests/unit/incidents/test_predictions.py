"""The backend asks the real engine about incidents; recommendations go through policy;
without the engine, incidents are kept and say why (fallback mode)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.engine.app import create_app as engine_app
from aegis.engine.model import train
from aegis.engine.state import ModelHolder
from aegis.executor.app import create_app as executor_app
from aegis.executor.backends.kubernetes import KubernetesBackend
from aegis.executor.client import ExecutorClient
from aegis.incidents import jobs
from tests.support import factories
from tests.support.alerts import alert, payload
from tests.support.fake_kube import FakeKubeApiServer
from tests.support.services import free_port

ALLOW_AI = {
    "id": "ai-restarts",
    "effect": "allow",
    "subjects": ["principal:ai-engine"],
    "actions": ["*"],
    "resources": {"namespaces": ["demo"], "names": ["*"]},
}


def _seed(
    api: TestClient,
    settings: Settings,
    database: Database,
    name: str,
    starts_at: str | None = None,
) -> dict[str, str]:
    admin = factories.signed_in(api, database, "admin")
    api.post("/api/v1/policy", json=ALLOW_AI, headers=admin)
    raised = alert(name, namespace="demo", deployment="web", severity="critical")
    if starts_at is not None:
        raised["startsAt"] = starts_at
    api.post(
        "/api/v1/alerts/alertmanager",
        json=payload(raised),
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


def test_the_engine_reads_the_workloads_log_lines_through_the_executor(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """Backend -> executor (signed ``/v1/logs``, kubernetes backend on the FAKE API server) ->
    the engine mines the lines: a panic that only appears after the alert began is new."""
    settings = make_settings(
        database_url=db_url,
        ai_engine_enabled=True,
        ai_engine_url="http://engine",
        executor_backend="kubernetes",
        executor_allowed_namespaces=["demo"],
    )
    holder = ModelHolder()
    holder.swap(train())
    now = time.time()
    with FakeKubeApiServer() as fake:
        fake.add_deployment("demo", "web", replicas=2)
        for pod in fake.pod_names("demo"):
            quiet = [(now - 3000 + i * 30, b"GET /health 200 in 3ms") for i in range(90)]
            broken = [
                (now - 60 + i, b"panic: runtime error: invalid memory address") for i in range(8)
            ]
            fake.add_log_lines("demo", pod, quiet + broken)
        with (
            TestClient(create_app(settings)) as api,
            TestClient(engine_app(settings, holder=holder), base_url="http://engine") as engine,
            TestClient(
                executor_app(settings, backend=KubernetesBackend(fake.api_client())),
                base_url="http://executor",
            ) as executor_http,
        ):
            started = datetime.fromtimestamp(now - 120, tz=UTC).isoformat()
            admin = _seed(api, settings, database, "WorkloadDegraded", started)
            executor = ExecutorClient(
                "http://executor", settings.secret("executor_hmac_secret"), http=executor_http
            )
            assert jobs.predict_pending(database, settings, engine, executor=executor) == 1
            incident = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
        log_reads = [r for r in fake.requests if r.path.endswith("/log")]

    assert incident["prediction_status"] == "ok"
    assert incident["prediction_note"].endswith("; 196 log lines from 2 pods")
    logs = incident["prediction"]["logs"]
    assert logs["lines"] == 196
    panic = next(e for e in logs["evidence"] if e["template"].startswith("panic:"))
    assert panic["kind"] == "new" and panic["recent_count"] == 16
    assert "crash" in panic["signatures"]
    assert len(log_reads) == 2 and all(r.query["timestamps"] == "true" for r in log_reads)
