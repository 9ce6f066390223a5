"""The closed loop on real processes: Aegis → Prometheus → Alertmanager → Aegis.

A real backend (``aegis serve backend``) runs with an unreachable audit object store (game-day
exercise 4), so its checkpoint writes fail and ``aegis_audit_write_errors_total`` rises. A real
Prometheus scrapes it with the repository's rules (``for:`` shortened to 0s by the test), a real
Alertmanager routes with the repository's config (Slack/PagerDuty pointed at a loopback sink, the
Aegis receiver at the backend), and the alert arrives at Aegis as an incident.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from aegis.database.core import Database
from tests.conftest import require
from tests.support import factories, promstack
from tests.support.processes import wait_port
from tests.support.services import free_port

TOKEN = "e2e-alert-webhook-token-" + "t" * 24


@pytest.fixture
def backend(tmp_path: Path, db_url: str) -> Iterator[tuple[str, str]]:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AEGIS_", "DATABASE_"))}
    env.update(
        {
            "AEGIS_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": db_url,
            "ALERT_WEBHOOK_TOKEN": TOKEN,
            "AUDIT_STORE_URL": (blocker / "audit").as_uri(),
            "AUDIT_CHECKPOINT_INTERVAL_S": "1",
            "AI_ENGINE_ENABLED": "false",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "aegis", "serve", "backend", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout_s=60)
        yield f"127.0.0.1:{port}", db_url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def _alertmanager_for(address: str, tmp_path: Path) -> Iterator[promstack.RunningProcess]:
    """A real Alertmanager with the repository's config: the Aegis receiver posts to the backend
    at ``address``, Slack and PagerDuty to a loopback sink."""
    sink = promstack.HttpSink.start()
    try:
        am_config = promstack.render_alertmanager_config(
            tmp_path / "am",
            sink_url=sink.url,
            webhook_url=f"http://{address}/api/v1/alerts/alertmanager",
            webhook_token=TOKEN,
        )
        with promstack.alertmanager(am_config, tmp_path / "am") as am:
            yield am
    finally:
        sink.stop()


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_audit_write_failures_alert_reaches_aegis_as_an_incident(
    backend: tuple[str, str], tmp_path: Path
) -> None:
    require(promstack.prometheus_binary() is not None, "prometheus is not installed")
    require(promstack.alertmanager_binary() is not None, "alertmanager is not installed")
    address, db_url = backend
    database = Database(db_url)
    viewer = factories.user(database, "viewer")
    database.dispose()
    with _alertmanager_for(address, tmp_path) as am:
        rules = promstack.render_rules(tmp_path / "rules.yaml", hold="0s")
        prom_config = promstack.render_prometheus_config(
            tmp_path / "prometheus.yml",
            targets={"aegis-backend": [address]},
            alertmanager=am.address,
            rule_files=[rules],
        )
        with promstack.prometheus(prom_config, tmp_path / "prom") as prom:
            client = httpx.Client(base_url=f"http://{address}", timeout=5)
            headers = factories.bearer(factories.login(client, viewer))

            def firing_in_prometheus() -> bool:
                alerts = prom.get_json("/api/v1/alerts")["data"]["alerts"]
                return any(
                    a["labels"]["alertname"] == "AegisAuditWriteFailures" and a["state"] == "firing"
                    for a in alerts
                )

            def incident() -> dict[str, Any] | None:
                items = client.get("/api/v1/incidents", headers=headers).json()["items"]
                return next((i for i in items if i["title"] == "AegisAuditWriteFailures"), None)

            promstack.wait_for(
                firing_in_prometheus,
                timeout=90,
                what="AegisAuditWriteFailures firing in Prometheus",
            )
            found = promstack.wait_for(
                incident, timeout=60, what="the alert arriving at Aegis as an incident"
            )
            in_alertmanager = am.get_json("/api/v2/alerts")
            client.close()
    assert found["status"] == "open"
    assert any(a["labels"]["alertname"] == "AegisAuditWriteFailures" for a in in_alertmanager)


def _metric(address: str, name: str, **labels: str) -> float:
    text = httpx.get(f"http://{address}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_a_group_larger_than_the_webhook_takes_reaches_aegis_in_part_and_is_counted(
    backend: tuple[str, str], tmp_path: Path
) -> None:
    """1,200 pods of one alert: one Alertmanager group, more alerts than one webhook payload
    may hold. With the shipped config's max_alerts, Aegis gets the first 200 (and opens their
    incidents) and counts the 1,000 left out, instead of refusing the payload whole (which
    Alertmanager does not retry: every alert of the group would be lost)."""
    require(promstack.alertmanager_binary() is not None, "alertmanager is not installed")
    address, _ = backend
    with _alertmanager_for(address, tmp_path) as am:
        crash_loops = [
            {
                "labels": {
                    "alertname": "KubePodCrashLooping",
                    "job": "kube-state-metrics",
                    "severity": "warning",
                    "namespace": "demo",
                    "pod": f"web-{n:04d}",
                },
                "annotations": {"summary": f"pod web-{n:04d} is crash looping"},
            }
            for n in range(1200)
        ]
        posted = httpx.post(f"{am.url}/api/v2/alerts", json=crash_loops, timeout=30)
        assert posted.status_code == 200, posted.text
        promstack.wait_for(
            lambda: _metric(address, "aegis_alerts_truncated_total") >= 1000,
            timeout=60,
            what="Alertmanager's payload reaching Aegis",
        )
        received = _metric(address, "aegis_alerts_received_total", status="firing")
    assert received >= 200  # 200 a payload (a group flushed early is sent again once complete)
