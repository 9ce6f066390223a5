"""A real Prometheus runs observability/prometheus/prometheus.yml against real /metrics endpoints.

Two processes serve aegis.core.metrics on loopback the way a freshly started service does (a
pristine registry, no model loaded); the executor's target has nothing listening. Prometheus,
started by tests/support/promstack.py with the repository's config (targets and intervals
replaced, the rule file found through the config's own relative path), must load every alert
rule, scrape both processes under the job names the rules use, find the Alertmanager, and put
AegisModelNotLoaded and AegisServiceDown into pending for exactly the right targets.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observability.promql import alert_rules
from tests.support import promstack
from tests.support.services import free_port

pytestmark = pytest.mark.slow

_SERVE_METRICS = """
import sys, time
from prometheus_client import start_http_server
import aegis.core.metrics  # declares every Aegis metric in the default registry
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def metrics_server() -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", _SERVE_METRICS, str(port), "300"])
        started.append(proc)
        promstack.wait_for(
            lambda: _answers(f"http://127.0.0.1:{port}/metrics"), timeout=30, what="metrics"
        )
        return f"127.0.0.1:{port}"

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return b"aegis_audit_journal_pending" in resp.read()
    except (urllib.error.URLError, OSError):
        return False


def _active(prom: promstack.RunningProcess) -> set[tuple[str, str, str]]:
    """Alerts whose condition holds (pending, or firing on a machine slow enough to pass for:)."""
    alerts = prom.get_json("/api/v1/alerts")["data"]["alerts"]
    return {
        (a["labels"]["alertname"], a["labels"].get("job", ""), a["labels"].get("instance", ""))
        for a in alerts
        if a["state"] in {"pending", "firing"}
    }


def _query(prom: promstack.RunningProcess, expr: str) -> list[dict[str, Any]]:
    from urllib.parse import quote

    return list(prom.get_json(f"/api/v1/query?query={quote(expr)}")["data"]["result"])


def test_prometheus_config_scrapes_aegis_and_evaluates_the_alert_rules(
    prometheus_bin: str, alertmanager_bin: str, metrics_server: Any, tmp_path: Path
) -> None:
    backend, engine = metrics_server(), metrics_server()
    executor = f"127.0.0.1:{free_port()}"  # nothing listens there
    sink = promstack.HttpSink.start()
    try:
        am_config = promstack.render_alertmanager_config(tmp_path / "am", sink_url=sink.url)
        with promstack.alertmanager(am_config, tmp_path / "am") as am:
            config = promstack.render_prometheus_config(
                tmp_path / "prometheus.yml",
                targets={
                    "aegis-backend": [backend],
                    "aegis-engine": [engine],
                    "aegis-executor": [executor],
                },
                alertmanager=am.address,
            )
            with promstack.prometheus(config, tmp_path / "prom") as prom:
                groups = prom.get_json("/api/v1/rules")["data"]["groups"]
                loaded = {rule["name"] for group in groups for rule in group["rules"]}
                assert loaded == set(alert_rules())

                expected = {
                    ("AegisModelNotLoaded", "aegis-engine", engine),
                    ("AegisServiceDown", "aegis-executor", executor),
                }
                pending = promstack.wait_for(
                    lambda: (p := _active(prom)) >= expected and p,
                    timeout=60,
                    what="AegisModelNotLoaded and AegisServiceDown pending",
                )
                assert {p for p in pending if p[0] == "AegisServiceDown"} == {
                    ("AegisServiceDown", "aegis-executor", executor)
                }
                assert {p for p in pending if p[0] == "AegisModelNotLoaded"} == {
                    ("AegisModelNotLoaded", "aegis-engine", engine)
                }

                # both processes' exposition is scraped under the job names the rules use
                promstack.wait_for(
                    lambda: (
                        {r["metric"]["job"] for r in _query(prom, "aegis_audit_journal_pending")}
                        == {"aegis-backend", "aegis-engine"}
                    ),
                    timeout=30,
                    what="both metrics servers scraped",
                )
                engine_up = _query(prom, 'up{job="aegis-engine"}')
                assert [r["metric"].get("rollout_track") for r in engine_up] == ["stable"]

                active = promstack.wait_for(
                    lambda: prom.get_json("/api/v1/alertmanagers")["data"]["activeAlertmanagers"],
                    timeout=30,
                    what="Alertmanager discovered",
                )
                assert [a["url"] for a in active] == [f"{am.url}/api/v2/alerts"]
    finally:
        sink.stop()
