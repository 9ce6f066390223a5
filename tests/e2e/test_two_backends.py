"""Two backends (``aegis serve backend``, as the Helm chart runs them) share one database and one
engine (``aegis serve engine``): every incident gets its prediction, and the engine is asked
about each incident once, not once per backend."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import httpx
from sqlalchemy import select

from aegis.database.core import Database
from aegis.incidents.models import Incident
from tests.support.alerts import alert, deliver
from tests.support.processes import aegis_serve, wait_port, wait_until
from tests.support.releases import Releases
from tests.support.services import free_port

KEY = "two-backends-key-" + "k" * 24
TOKEN = "two-backends-webhook-" + "w" * 24
WORKLOADS = 8


def _statuses(database: Database) -> list[str]:
    with database.unit_of_work() as session:
        return list(session.scalars(select(Incident.prediction_status)))


def _engine_answers(url: str) -> float:
    """``/predict`` requests the engine answered with 200, from its own ``/metrics``."""
    sample = 'aegis_inference_requests_total{endpoint="predict",status="200"}'
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(sample):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_each_incident_is_asked_about_once_by_two_backends(
    tmp_path: Path, db_url: str, database: Database
) -> None:
    releases = Releases.start(tmp_path, database)
    releases.release("0.1")
    engine_port = free_port()
    with ExitStack() as running:
        engine = running.enter_context(
            aegis_serve(
                "engine",
                tmp_path / "engine",
                engine_port,
                AEGIS_DATA_DIR=str(tmp_path / "engine" / "data"),
                DATABASE_URL=db_url,
                AEGIS_TRUSTED_KEYS=str(releases.pub),
                API_KEY=KEY,
            )
        )
        backends = [
            running.enter_context(
                aegis_serve(
                    "backend",
                    tmp_path / name,
                    free_port(),
                    AEGIS_DATA_DIR=str(tmp_path / name / "data"),
                    DATABASE_URL=db_url,
                    API_KEY=KEY,
                    ALERT_WEBHOOK_TOKEN=TOKEN,
                    AI_ENGINE_ENABLED="true",
                    AI_ENGINE_URL=engine,
                )
            )
            for name in ("backend-a", "backend-b")
        ]
        for url in backends:
            wait_port(int(url.rsplit(":", 1)[1]), timeout_s=60)
        wait_until(
            "the engine serves 0.1",
            lambda: httpx.get(f"{engine}/health", timeout=2).json().get("model_loaded") is True,
        )

        alerts = [
            alert("KubePodCrashLooping", namespace="demo", deployment=f"web{i}")
            for i in range(WORKLOADS)
        ]
        response = deliver(backends[0], TOKEN, *alerts)
        assert response.status_code == 200, response.text

        wait_until(
            "every incident has its prediction",
            lambda: _statuses(database) == ["ok"] * WORKLOADS,
        )
        asked = _engine_answers(engine)

    assert asked == WORKLOADS
