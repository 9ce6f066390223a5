"""The runbook's health contract (operations runbook section 4)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from aegis.backend_app import create_app
from aegis.core.config import Settings
from tests.support.floods import flooding
from tests.support.services import free_port


def test_health_is_200_with_every_dependency_reported(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    with TestClient(create_app(make_settings(database_url=db_url))) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "up"
    assert body["redis"] == "disabled"
    assert body["aiEngine"] == "disabled"


def test_health_is_503_when_the_database_is_down(make_settings: Callable[..., Settings]) -> None:
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    with TestClient(create_app(make_settings(database_url=dead))) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["database"] == "down"


def test_health_is_503_when_configured_redis_is_down(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    settings = make_settings(database_url=db_url, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["redis"] == "down"


def test_health_reports_redis_up_when_it_answers(
    make_settings: Callable[..., Settings], db_url: str, redis_url: str
) -> None:
    with TestClient(create_app(make_settings(database_url=db_url, redis_url=redis_url))) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["redis"] == "up"


def test_ai_engine_down_degrades_but_does_not_fail_health_unless_required(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    engine_url = f"http://127.0.0.1:{free_port()}"
    optional = make_settings(database_url=db_url, ai_engine_enabled=True, ai_engine_url=engine_url)
    required = make_settings(
        database_url=db_url,
        ai_engine_enabled=True,
        ai_engine_url=engine_url,
        ai_engine_required=True,
    )
    with TestClient(create_app(optional)) as client:
        degraded = client.get("/api/v1/health")
    with TestClient(create_app(required)) as client:
        failing = client.get("/api/v1/health")
    assert (degraded.status_code, degraded.json()["status"]) == (200, "degraded")
    assert degraded.json()["aiEngine"] == "down"
    assert failing.status_code == 503


def test_an_engine_url_that_is_not_a_url_reports_the_engine_down(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    """A typo in AI_ENGINE_URL (a space in the port) is the optional engine down, not a 500
    that would keep the backend out of service."""
    settings = make_settings(
        database_url=db_url, ai_engine_enabled=True, ai_engine_url="http://ai-engine:80 00"
    )
    with TestClient(create_app(settings)) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["aiEngine"]) == ("degraded", "down")


def test_the_engine_probe_reads_its_status_not_a_body_that_never_ends(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    """Whatever answers at AI_ENGINE_URL cannot hold the health check (or fill the backend's
    memory) with an endless body: the probe closes the connection once it has the status."""
    cap = 128 * 1024 * 1024
    with flooding(cap=cap) as engine:
        settings = make_settings(
            database_url=db_url, ai_engine_enabled=True, ai_engine_url=engine.url
        )
        with TestClient(create_app(settings)) as client:
            health = client.get("/api/v1/health").json()
        cut_off = engine.answers(1)

    assert health["aiEngine"] == "up"
    assert cut_off == [True] and engine.sent[0] < cap


def test_ping_reports_ok_and_uptime(make_settings: Callable[..., Settings], db_url: str) -> None:
    with TestClient(create_app(make_settings(database_url=db_url))) as client:
        body = client.get("/api/v1/health/ping").json()
    assert body["status"] == "ok"
    assert body["uptime"] >= 0


def test_engine_and_executor_health_and_metrics(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    from aegis.engine.app import create_app as engine_app
    from aegis.executor.app import create_app as executor_app

    for factory in (engine_app, executor_app):
        with TestClient(factory(make_settings(database_url=db_url))) as client:
            assert client.get("/health").status_code == 200
            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            assert "aegis_http_requests_total" in metrics.text
