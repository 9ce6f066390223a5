"""The backend sends the engine the recent metric windows of an incident's workload, read from
a real Prometheus (its TSDB backfilled with ``promtool tsdb create-blocks-from openmetrics``),
and the engine's detector scores them; without Prometheus, incidents are still predicted and
say why they went without metrics."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aegis.backend_app import create_app
from aegis.core.config import MetricQuery, Settings
from aegis.database.core import Database
from aegis.engine.app import create_app as engine_app
from aegis.engine.model import train
from aegis.engine.state import ModelHolder
from aegis.executor.client import ExecutorClient
from aegis.incidents import jobs, telemetry
from tests.support import factories, promstack
from tests.support.alerts import alert, deliver
from tests.support.floods import flooding
from tests.support.services import free_port, serving

STEP = 15
NOW = time.time()
SPIKE_AT = NOW - 4 * 60  # the CPU of the web pods jumps 4 minutes before the test starts
POD = "web-5d4f8b7c9-x2k4q"
# pods that must not be taken for web's: another deployment's, a prefix's, and one that an
# unescaped "." would match
OTHERS = ("web-canary-6c8d9f-abcde", "webhook-7f9c-zzzzz")
DOTTED_POD, LOOKALIKE_POD = "web.v2-7b8c9d-q1w2e", "webxv2-7b8c9d-q1w2e"
# ReplicaSets and when they were created: web's are old; api rolled out 10 minutes ago (and
# webhook a minute ago, which is not api's)
ROLLOUT_AT = NOW - 10 * 60
NO_LOGS = "; no log lines: INCIDENT_LOG_LINES is 0"
REPLICASETS = {
    "web-6b7c8d9e1": NOW - 3 * 86400,
    "web-5d4f8b7c9": NOW - 2 * 86400,
    "api-7c6b5a4f3": NOW - 3 * 86400,
    "api-58d9c7b6f": ROLLOUT_AT,
    "webhook-7f9c": NOW - 60,
}


def _openmetrics() -> str:
    """Samples from 50 minutes before NOW to 30 minutes after (so that the windows are full
    whenever a test runs): CPU (a counter), memory and restarts of several pods, replicas,
    ReplicaSets."""
    times = [NOW - 50 * 60 + i * STEP for i in range(int(80 * 60 / STEP) + 1)]
    lines = []
    for family in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes"):
        lines.append(f"# TYPE {family} gauge")
        for pod in (POD, *OTHERS, DOTTED_POD, LOOKALIKE_POD):
            used = 0.0
            for t in times:
                rate = 1.8 if (t >= SPIKE_AT and pod == POD) else 0.2
                used += rate * STEP
                value = used if family.startswith("container_cpu") else _memory(pod)
                labels = f'namespace="demo",pod="{pod}",container="app"'
                lines.append(f"{family}{{{labels}}} {value} {t:.3f}")
    lines.append("# TYPE kube_pod_container_status_restarts_total gauge")
    lines += [
        f'kube_pod_container_status_restarts_total{{namespace="demo",pod="{POD}",container="app"}}'
        f" 0 {t:.3f}"
        for t in times
    ]
    lines.append("# TYPE kube_replicaset_created gauge")
    for replicaset, created in REPLICASETS.items():
        labels = f'namespace="demo",replicaset="{replicaset}"'
        lines += [
            f"kube_replicaset_created{{{labels}}} {created} {t:.3f}" for t in times if t >= created
        ]
    lines.append("# TYPE kube_replicaset_owner gauge")
    for replicaset, created in REPLICASETS.items():
        owner = replicaset.rsplit("-", 1)[0]
        labels = f'namespace="demo",replicaset="{replicaset}",owner_kind="Deployment"'
        lines += [
            f'kube_replicaset_owner{{{labels},owner_name="{owner}"}} 1 {t:.3f}'
            for t in times
            if t >= created
        ]
    lines.append("# TYPE kube_deployment_spec_replicas gauge")
    lines += [
        f'kube_deployment_spec_replicas{{namespace="demo",deployment="web"}} 3 {t:.3f}'
        for t in times
    ]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _memory(pod: str) -> float:
    return {LOOKALIKE_POD: 999e6, DOTTED_POD: 5e6}.get(pod, 256e6)


@pytest.fixture(scope="module")
def prometheus_url(
    promtool: str, prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    work = tmp_path_factory.mktemp("incident-metrics")
    source = work / "samples.om"
    source.write_text(_openmetrics())
    storage = work / "prometheus-data"
    storage.mkdir()
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(storage)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    config = work / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    # retention well beyond the samples' span: a 1 h retention could drop the older of the
    # backfilled blocks, depending on where the 2 h block boundary falls
    with promstack.prometheus(config, work, retention="30d") as running:
        yield running.url


def _settings(make_settings: Callable[..., Settings], db_url: str, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "ai_engine_enabled": True,
        "ai_engine_url": "http://engine",
        "incident_metrics_lookback_s": 40 * 60,
        "incident_log_lines": 0,  # logs are test_predictions.py's
    }
    return make_settings(**(values | over))


def _predicted(
    settings: Settings, database: Database, name: str = "WorkloadDegraded", **labels: str
) -> dict[str, Any]:
    """Raise one alert (started 5 minutes ago), let the backend ask the real engine."""
    holder = ModelHolder()
    holder.swap(train())
    started = datetime.fromtimestamp(NOW - 5 * 60, tz=UTC).isoformat()
    with (
        TestClient(create_app(settings)) as api,
        TestClient(engine_app(settings, holder=holder), base_url="http://engine") as engine,
    ):
        admin = factories.signed_in(api, database, "admin")
        raised = alert(name)
        raised["labels"] = {"alertname": name, "severity": "warning", **labels}
        raised["startsAt"] = started
        sent = deliver(api, settings.secret("alert_webhook_token"), raised)
        assert sent.status_code == 200, sent.text
        assert jobs.predict_pending(database, settings, engine) == 1
        incident: dict[str, Any] = api.get("/api/v1/incidents", headers=admin).json()["items"][0]
    return incident


def test_the_engine_scores_the_workloads_metric_windows_from_prometheus(
    prometheus_url: str,
    make_settings: Callable[..., Settings],
    db_url: str,
    database: Database,
) -> None:
    settings = _settings(make_settings, db_url, prometheus_url=prometheus_url)

    incident = _predicted(settings, database, namespace="demo", deployment="web")

    assert incident["prediction_status"] == "ok"
    assert incident["prediction_note"] == "3 metric series from Prometheus, 3 replicas" + NO_LOGS
    series = {s["name"]: s for s in incident["prediction"]["series"]}
    assert set(series) == {
        "container_cpu_usage_cores",
        "container_memory_working_set_bytes",
        "kube_pod_container_status_restarts_total",
    }
    # from 40 minutes before the alert (5 minutes before NOW) to now, at a 15 s step
    assert len({s["points"] for s in series.values()}) == 1
    assert all(s["points"] >= 181 for s in series.values())
    cpu = series["container_cpu_usage_cores"]
    assert cpu["family"] == "cpu"
    assert cpu["score"] > 0.5  # the jump of web's CPU is what the detector reports
    assert any(d["timestamp"] >= SPIKE_AT for d in cpu["drivers"])
    assert series["kube_pod_container_status_restarts_total"]["score"] == 0.0
    # the alert's name says nothing of CPU: the symptom and the advice come from the metrics,
    # the replica count from kube-state-metrics
    symptoms = {s["name"] for s in incident["prediction"]["symptoms"]}
    assert "cpu_high" in symptoms, symptoms
    top = incident["prediction"]["recommendations"][0]
    assert top["action"] == "scale_deployment"
    assert top["params"]["replicas"] > 3


def test_a_rollout_shortly_before_the_alert_is_sent_and_rolling_back_is_advised(
    prometheus_url: str,
    make_settings: Callable[..., Settings],
    db_url: str,
    database: Database,
) -> None:
    settings = _settings(make_settings, db_url, prometheus_url=prometheus_url)

    incident = _predicted(settings, database, "HighErrorRate", namespace="demo", deployment="api")

    stamp = datetime.fromtimestamp(ROLLOUT_AT, tz=UTC).strftime("%H:%M:%S UTC")
    assert incident["prediction_note"] == (
        f"0 metric series from Prometheus, a rollout at {stamp}{NO_LOGS}"
    )
    prediction = incident["prediction"]
    deploy = next(s for s in prediction["symptoms"] if s["name"] == "deploy_recent")
    assert "deploy 7c6b5a4f3 -> 58d9c7b6f (5 min before the incident)" in deploy["evidence"]
    assert prediction["recommendations"][0]["action"] == "rollback_deployment"


def test_an_alert_naming_a_pod_reads_that_pod_only_and_names_are_not_patterns(
    prometheus_url: str, make_settings: Callable[..., Settings]
) -> None:
    memory = MetricQuery(
        name="memory",
        query='sum(container_memory_working_set_bytes{namespace="$namespace", pod=~"$pods"})',
    )
    settings = make_settings(prometheus_url=prometheus_url, incident_metric_queries=[memory])
    labels = {"namespace": "demo", "pod": DOTTED_POD}

    context = telemetry.collect(settings, labels, None, now=time.time())

    assert context.note == "1 metric series from Prometheus"
    (series,) = context.series
    assert len(series["timestamps"]) == len(series["values"]) >= 200
    assert set(series["values"]) == {"5000000"}  # not its look-alike's 999 MB added


def test_a_label_that_is_not_a_kubernetes_name_queries_nothing_and_says_why(
    prometheus_url: str, make_settings: Callable[..., Settings]
) -> None:
    # a NUL stored as U+FFFD, or a regex: never put into a query
    settings = make_settings(prometheus_url=prometheus_url)
    for pod in ("web-1\ufffdx", "web-.*", ""):
        context = telemetry.collect(settings, {"namespace": "demo", "pod": pod}, None, now=NOW)
        assert context.series == []
        assert context.note == f"no metric series: {telemetry.NO_WORKLOAD}"


def test_a_query_prometheus_refuses_is_noted_and_the_others_are_sent(
    prometheus_url: str,
    make_settings: Callable[..., Settings],
    db_url: str,
    database: Database,
) -> None:
    broken = MetricQuery(name="broken", query='sum(rate(up{namespace="$namespace"}[5m])')
    queries = [broken, *Settings(_env_file=None).incident_metric_queries[:1]]
    settings = _settings(
        make_settings, db_url, prometheus_url=prometheus_url, incident_metric_queries=queries
    )

    incident = _predicted(settings, database, namespace="demo", deployment="web")

    assert incident["prediction_status"] == "ok"
    note = incident["prediction_note"]
    assert note.startswith("1 metric series from Prometheus, 3 replicas; not sent: broken: ")
    assert "parse error" in note and note.endswith(NO_LOGS)
    assert [s["name"] for s in incident["prediction"]["series"]] == ["container_cpu_usage_cores"]


def test_without_prometheus_the_incident_is_predicted_from_the_alert_and_says_why(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    down = _settings(make_settings, db_url, prometheus_url=f"http://127.0.0.1:{free_port()}")

    incident = _predicted(down, database, namespace="demo", deployment="web")

    assert incident["prediction_status"] == "ok"
    assert incident["prediction"]["series"] == []
    assert incident["prediction_note"] == (
        "0 metric series from Prometheus; not sent: Prometheus unreachable (ConnectError)" + NO_LOGS
    )


def test_with_no_prometheus_configured_the_note_says_so(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    incident = _predicted(_settings(make_settings, db_url), database, namespace="demo")

    assert incident["prediction_status"] == "ok"
    assert incident["prediction_note"] == "no metric series: PROMETHEUS_URL is not set" + NO_LOGS


@pytest.mark.parametrize(
    "labels",
    [
        {"namespace": 'demo"} or vector(1) #', "deployment": "web"},
        {"namespace": "demo", "deployment": "web|.*"},
        {"namespace": "demo", "pod": "Web-1"},
        {"namespace": "demo.example", "deployment": "web"},
        {"namespace": "demo"},
        {"deployment": "web"},
    ],
)
def test_labels_that_are_not_a_workload_never_reach_a_query(labels: dict[str, str]) -> None:
    assert telemetry.scope_of(labels) is None


def test_a_deployments_pods_are_matched_by_their_generated_names() -> None:
    scope = telemetry.scope_of({"namespace": "demo", "deployment": "web.v2"})

    assert scope is not None
    assert scope.pods == "web\\\\.v2-[a-z0-9]+-[a-z0-9]+"  # as written inside a PromQL string


def test_metric_queries_must_select_the_namespace_and_use_known_placeholders() -> None:
    with pytest.raises(ValueError, match="must select the incident's"):
        MetricQuery(name="all", query="sum(up)")
    with pytest.raises(ValueError, match="unknown or malformed placeholder"):
        MetricQuery(name="typo", query='up{namespace="$namespace", pod="$pod"}')


def test_metric_queries_come_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    query = 'sum(rate(http_requests_total{namespace="$namespace", code=~"5.."}[5m]))'
    monkeypatch.setenv(
        "INCIDENT_METRIC_QUERIES",
        json.dumps([{"name": "errors", "family": "errors", "query": query}]),
    )

    (parsed,) = Settings(_env_file=None).incident_metric_queries

    assert (parsed.name, parsed.family, parsed.query) == ("errors", "errors", query)


@pytest.fixture
def garbled_prometheus() -> Iterator[str]:
    """Not Prometheus: a server on loopback that answers every query with a success whose data
    is not what the query asked for (a matrix of unreadable points, a vector of non-numbers)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            kind = "matrix" if "query_range" in self.path else "vector"
            result = (
                [{"metric": {}, "values": [["soon", "1"], [1, 2, 3]]}]
                if kind == "matrix"
                else [{"metric": {"replicaset": "web-1"}, "value": [1, "three"]}]
            )
            body = json.dumps({"status": "success", "data": {"resultType": kind, "result": result}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            return

    with serving(Handler) as url:
        yield url


def test_answers_that_are_not_what_was_asked_are_noted_not_fatal(
    garbled_prometheus: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(prometheus_url=garbled_prometheus)
    labels = {"namespace": "demo", "deployment": "web"}

    context = telemetry.collect(settings, labels, None, now=time.time())

    assert context.series == [] and context.replicas is None and context.changes == []
    assert context.note == "0 metric series from Prometheus; not sent: " + "; ".join(
        f"{q.name}: Prometheus answered something that is not a matrix"
        for q in settings.incident_metric_queries
    )


def test_an_answer_that_never_ends_is_cut_off_and_its_query_not_sent(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    """Prometheus (or what PROMETHEUS_URL points at) streams without end: the backend reads at
    most MAX_ANSWER_BYTES of each answer, closes the connection, and predicts without the
    series, saying why."""
    cap = 8 * telemetry.MAX_ANSWER_BYTES  # far past what the backend reads, short of a hung test
    start = b'{"status": "success", "data": {"resultType": "matrix", "result": ['
    with flooding(start=start, cap=cap) as prometheus:
        settings = _settings(make_settings, db_url, prometheus_url=prometheus.url)
        incident = _predicted(settings, database, namespace="demo", deployment="web")
        queries = len(settings.incident_metric_queries) + 2  # and the replicas and rollouts
        cut_off = prometheus.answers(queries)

    assert incident["prediction_status"] == "ok"
    assert incident["prediction_note"] == (
        "0 metric series from Prometheus; not sent: "
        + "; ".join(
            f"{q.name}: Prometheus answered more than 16 MiB"
            for q in settings.incident_metric_queries
        )
        + NO_LOGS
    )
    assert cut_off == [True] * queries and max(prometheus.sent) < cap


class _Silent:
    """A loopback listener that accepts connections and never answers (a hung service)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.sock.accept()[0])

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_a_hung_prometheus_or_executor_is_waited_for_once_per_pass(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    prometheus, executor_host = _Silent(), _Silent()
    settings = _settings(
        make_settings,
        db_url,
        prometheus_url=prometheus.url,
        prometheus_timeout_s=0.3,
        incident_log_lines=100,
    )
    holder = ModelHolder()
    holder.swap(train())
    try:
        with (
            TestClient(create_app(settings)) as api,
            TestClient(engine_app(settings, holder=holder), base_url="http://engine") as engine,
            ExecutorClient(
                executor_host.url, settings.secret("executor_hmac_secret"), timeout=0.3
            ) as executor,
        ):
            admin = factories.signed_in(api, database, "admin")
            for deployment in ("web", "api"):
                sent = deliver(
                    api,
                    settings.secret("alert_webhook_token"),
                    alert("WorkloadDegraded", namespace="demo", deployment=deployment),
                )
                assert sent.status_code == 200
            assert jobs.predict_pending(database, settings, engine, executor=executor) == 2
            incidents = api.get("/api/v1/incidents", headers=admin).json()["items"]
    finally:
        prometheus.close()
        executor_host.close()

    notes = sorted(i["prediction_note"] for i in incidents)
    assert all(i["prediction_status"] == "ok" for i in incidents)
    assert notes == [
        "0 metric series from Prometheus; not sent: Prometheus unreachable (ReadTimeout); "
        "no log lines: executor unreachable (ReadTimeout)",
        "no metric series: Prometheus unreachable earlier in this pass; "
        "no log lines: executor unreachable earlier in this pass",
    ]
    assert len(prometheus.accepted) == 1 and len(executor_host.accepted) == 1


def test_a_hung_engine_is_waited_for_once_per_pass(
    make_settings: Callable[..., Settings], db_url: str, database: Database
) -> None:
    # An incident storm while the engine hangs: each incident would wait out the timeout.
    engine_host = _Silent()
    settings = _settings(
        make_settings, db_url, ai_engine_url=engine_host.url, ai_engine_timeout_s=0.3
    )
    try:
        with TestClient(create_app(settings)) as api:
            admin = factories.signed_in(api, database, "admin")
            for deployment in ("web", "api", "db"):
                sent = deliver(
                    api,
                    settings.secret("alert_webhook_token"),
                    alert("WorkloadDegraded", namespace="demo", deployment=deployment),
                )
                assert sent.status_code == 200
            assert jobs.predict_pending(database, settings) == 3
            incidents = api.get("/api/v1/incidents", headers=admin).json()["items"]
    finally:
        engine_host.close()

    assert [i["prediction_status"] for i in incidents] == ["unavailable"] * 3
    notes = sorted(i["prediction_note"] for i in incidents)
    assert notes == [
        "stored without a prediction: AI engine unreachable (ReadTimeout)",
        "stored without a prediction: AI engine unreachable earlier in this pass",
        "stored without a prediction: AI engine unreachable earlier in this pass",
    ]
    assert len(engine_host.accepted) == 1


def test_the_window_reads_a_stored_naive_start_as_utc_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(incident_metrics_lookback_s=600, incident_metrics_step_s=15)
    started = datetime(2026, 11, 23, 10, 0, 0)  # as SQLite gives it back: naive, meaning UTC
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        start, end, step = telemetry.window(settings, started, now=1795430000.0)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()

    assert (start, end, step) == (1795428000.0 - 600, 1795430000.0, 15)
