"""k8s/argo-rollouts/example-rollout.yaml: an Argo canary of the AI engine whose analysis reads
only metrics Aegis exports and aborts (rolls back) at the thresholds of the canary alerts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import require
from tests.integration.observability.promql import (
    STANDARD_SERIES,
    alert_rules,
    exported_series,
    metric_names,
    promtool_check_exprs,
)
from tests.support import promstack
from tests.support.processes import clean_env, wait_until
from tests.support.services import free_port
from tests.unit.deploy.manifests import HELM, K8S, REPO, base_objects, by_name, load_docs

ROLLOUT_FILE = K8S / "argo-rollouts" / "example-rollout.yaml"
DOCS = load_docs(ROLLOUT_FILE)
(ROLLOUT,) = by_name(DOCS, "Rollout").values()
(TEMPLATE,) = by_name(DOCS, "AnalysisTemplate").values()
METRICS = {m["name"]: m for m in TEMPLATE["spec"]["metrics"]}


def _threshold(expr: str, pattern: str) -> float:
    match = re.search(pattern, expr)
    assert match, f"no {pattern!r} in {expr}"
    return float(match.group(1))


def test_rollout_takes_over_the_base_engine_deployment() -> None:
    deployment = by_name(base_objects(), "Deployment")["ai-engine"]
    ref = ROLLOUT["spec"]["workloadRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", "ai-engine")
    assert ROLLOUT["spec"]["selector"] == deployment["spec"]["selector"]
    assert ROLLOUT["metadata"]["namespace"] == deployment["metadata"]["namespace"]


def test_canary_has_steps_tracks_services_and_background_analysis() -> None:
    canary = ROLLOUT["spec"]["strategy"]["canary"]
    weights = [s["setWeight"] for s in canary["steps"] if "setWeight" in s]
    assert weights == sorted(weights) and 0 < weights[0] < 100
    assert any("pause" in s for s in canary["steps"])
    services = by_name(DOCS, "Service")
    assert {canary["canaryService"], canary["stableService"]} <= set(services)
    assert canary["canaryMetadata"]["labels"] == {"track": "canary"}
    assert canary["stableMetadata"]["labels"] == {"track": "stable"}
    names = [t["templateName"] for t in canary["analysis"]["templates"]]
    assert names == [TEMPLATE["metadata"]["name"]]
    assert ROLLOUT["spec"]["progressDeadlineAbort"] is True
    assert not TEMPLATE["spec"].get("dryRun"), "a dry-run metric never aborts the rollout"


def test_track_label_is_the_one_prometheus_relabels_to_rollout_track() -> None:
    podmonitor = (HELM / "templates" / "podmonitor.yaml").read_text()
    assert "__meta_kubernetes_pod_label_track" in podmonitor
    assert "targetLabel: rollout_track" in podmonitor


def test_analysis_queries_read_only_exported_metrics() -> None:
    known = exported_series() | STANDARD_SERIES
    for name, metric in METRICS.items():
        query = metric["provider"]["prometheus"]["query"]
        names = metric_names(query)
        assert names, f"{name}: no metric found in the query"
        assert names <= known, f"{name} reads metrics Aegis does not export: {names - known}"


def test_every_metric_can_fail_the_analysis() -> None:
    for name, metric in METRICS.items():
        assert metric.get("failureCondition"), f"{name} has no failureCondition"
        assert metric.get("failureLimit", 0) >= 0
        assert metric["interval"]


def test_error_rate_analysis_uses_the_alert_threshold() -> None:
    alert = alert_rules()["AegisCanaryErrorRateHigh"]["expr"]
    limit = _threshold(alert, r">\s*([0-9.]+)\s*$")
    metric = METRICS["canary-error-rate"]
    query = metric["provider"]["prometheus"]["query"]
    assert 'aegis_canary_requests_total{track="canary", outcome="error"}' in query
    assert _threshold(metric["failureCondition"], r"result\[0\]\s*>\s*([0-9.]+)") == limit
    assert _threshold(metric["successCondition"], r"result\[0\]\s*<=\s*([0-9.]+)") == limit


def test_error_rate_analysis_counts_the_requests_the_alert_counts() -> None:
    alert = alert_rules()["AegisCanaryErrorRateHigh"]["expr"]
    query = METRICS["canary-error-rate"]["provider"]["prometheus"]["query"]
    selectors = re.compile(r"aegis_canary_requests_total\{[^}]*\}")
    assert set(selectors.findall(query)) == set(selectors.findall(alert))


def test_latency_analysis_uses_the_alert_thresholds() -> None:
    alert = alert_rules()["AegisCanaryLatencyHigh"]["expr"]
    absolute = _threshold(alert, r"\)\)\s*>\s*([0-9.]+)")
    ratio = _threshold(alert, r">\s*([0-9.]+)\s*\*\s*histogram_quantile")
    quantile = _threshold(alert, r"histogram_quantile\(([0-9.]+)")
    query = METRICS["canary-latency-p95"]["provider"]["prometheus"]["query"]
    assert _threshold(query, r"> bool ([0-9.]+)\s*\)") == absolute
    assert _threshold(query, r"> bool ([0-9.]+) \* histogram_quantile") == ratio
    assert {float(q) for q in re.findall(r"histogram_quantile\(([0-9.]+)", query)} == {quantile}
    for track in ("canary", "stable"):
        assert f'rollout_track="{track}"' in query


def test_analysis_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = promstack.promtool_binary()
    require(promtool is not None, "promtool is not installed (Debian package: prometheus)")
    assert promtool is not None
    queries = [m["provider"]["prometheus"]["query"] for m in METRICS.values()]
    promtool_check_exprs(promtool, queries, tmp_path)


# Requests a minute on the canary track, by outcome; what the analysis must conclude.
ERROR_RATE_CASES = {
    "2% server errors fail it, however many bad requests callers send": (
        {"ok": 98, "error": 2, "client_error": 1000},
        [{"labels": "{}", "value": 1}],
    ),
    "callers' 4xx alone (bad tokens, unknown ids, rate limits) pass it": (
        {"ok": 100, "client_error": 1000},
        [{"labels": "{}", "value": 0}],
    ),
    "only callers' 4xx, nothing served, is inconclusive": ({"client_error": 100}, []),
}


@pytest.mark.parametrize("case", sorted(ERROR_RATE_CASES))
def test_error_rate_analysis_counts_server_faults_not_callers_mistakes(
    case: str, tmp_path: Path
) -> None:
    per_minute, expected = ERROR_RATE_CASES[case]
    assert _error_rate_analysis(per_minute, tmp_path) == expected


def _error_rate_analysis(per_minute: Mapping[str, float], tmp_path: Path) -> list[dict[str, Any]]:
    """The error-rate measurement after ten minutes of ``per_minute`` canary requests by outcome."""
    counts = {("canary", outcome): count for outcome, count in per_minute.items()}
    return _analysis("canary-error-rate", counts, tmp_path)


def _analysis(
    name: str, per_minute: Mapping[tuple[str, str], float], tmp_path: Path
) -> list[dict[str, Any]]:
    """Metric ``name``'s failureCondition, evaluated by promtool as Prometheus answers its query
    after ten minutes of ``per_minute`` requests by (track, outcome): ``[{"value": 1}]`` fails
    the measurement, ``[{"value": 0}]`` passes it, ``[]`` is inconclusive."""
    promtool = promstack.promtool_binary()
    require(promtool is not None, "promtool is not installed (Debian package: prometheus)")
    assert promtool is not None
    metric = METRICS[name]
    query = metric["provider"]["prometheus"]["query"]
    limit = _threshold(metric["failureCondition"], r"result\[0\]\s*>\s*([0-9.]+)")
    series = [
        {
            "series": f'aegis_canary_requests_total{{track="{track}", outcome="{outcome}"}}',
            "values": f"0+{count}x20",
        }
        for (track, outcome), count in per_minute.items()
    ]
    outputs = []
    # promtool tells which answer it got only by passing the test that expects it
    for expected in ([{"labels": "{}", "value": 1}], [{"labels": "{}", "value": 0}], []):
        check = {"expr": f"({query}) > bool {limit}", "eval_time": "10m", "exp_samples": expected}
        tests = {
            "rule_files": [],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": [check]}],
        }
        path = tmp_path / "analysis.test.yaml"
        path.write_text(yaml.safe_dump(tests))
        result = subprocess.run(
            [promtool, "test", "rules", str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode == 0:
            return expected
        outputs.append(result.stdout + result.stderr)
    raise AssertionError("\n".join(outputs))


def test_client_error_analysis_uses_the_alert_threshold() -> None:
    alert = alert_rules()["AegisCanaryClientErrorsHigh"]["expr"]
    limit = _threshold(alert, r">\s*([0-9.]+)\s*$")
    metric = METRICS["canary-client-errors"]
    assert _threshold(metric["failureCondition"], r"result\[0\]\s*>\s*([0-9.]+)") == limit
    assert _threshold(metric["successCondition"], r"result\[0\]\s*<=\s*([0-9.]+)") == limit


# Requests a minute by (track, outcome); what the client-error comparison must conclude.
CLIENT_ERROR_CASES = {
    "a canary refusing with a 4xx what the stable track serves fails it": (
        {
            ("canary", "ok"): 40,
            ("canary", "client_error"): 60,
            ("stable", "ok"): 285,
            ("stable", "client_error"): 15,
        },
        [{"labels": "{}", "value": 1}],
    ),
    "a stable track with no 4xx at all counts as refusing none": (
        {("canary", "ok"): 50, ("canary", "client_error"): 50, ("stable", "ok"): 300},
        [{"labels": "{}", "value": 1}],
    ),
    "strangers' 4xx landing on both tracks alike pass it": (
        {
            ("canary", "ok"): 10,
            ("canary", "client_error"): 90,
            ("stable", "ok"): 35,
            ("stable", "client_error"): 265,
        },
        [{"labels": "{}", "value": 0}],
    ),
    "with no stable traffic there is nothing to compare: it passes": (
        {("canary", "ok"): 10, ("canary", "client_error"): 90},
        [{"labels": "{}", "value": 0}],
    ),
    "no canary traffic is inconclusive": ({("stable", "ok"): 100}, []),
}


@pytest.mark.parametrize("case", sorted(CLIENT_ERROR_CASES))
def test_client_error_analysis_compares_the_canary_with_the_stable_track(
    case: str, tmp_path: Path
) -> None:
    per_minute, expected = CLIENT_ERROR_CASES[case]
    assert _analysis("canary-client-errors", per_minute, tmp_path) == expected


def test_rollout_autoscaler_targets_the_rollout() -> None:
    (hpa,) = by_name(DOCS, "HorizontalPodAutoscaler").values()
    target: dict[str, Any] = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Rollout", ROLLOUT["metadata"]["name"])


@pytest.mark.parametrize("name", sorted(METRICS))
def test_no_traffic_is_inconclusive_not_success(name: str) -> None:
    # An empty result matches neither condition: Argo marks it inconclusive and pauses.
    metric = METRICS[name]
    for condition in (metric["successCondition"], metric["failureCondition"]):
        assert condition.startswith("len(result) > 0 &&"), condition


_SERVE_CANARY = """
import sys
from collections.abc import Mapping
from pathlib import Path
from pydantic import SecretStr
from aegis.core import server
from aegis.core.config import Settings
from aegis.engine import model
from aegis.engine.app import create_app
from aegis.engine.state import ModelHolder
port, key, data = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
holder = ModelHolder()
holder.swap(model.train())
settings = Settings(
    _env_file=None, data_dir=data, api_key=SecretStr(key), rollout_track="canary",
    log_level="WARNING",
)
server.serve(create_app(settings, holder=holder), server.bind("127.0.0.1", port))
"""


@pytest.mark.slow
def test_the_runbook_drill_s_injected_errors_fail_the_canary_analysis(tmp_path: Path) -> None:
    # Runbooks 000 step G and 001 step 9: simulate_canary_load.py --error-rate against the
    # canary must roll it back. Its bad requests carry the engine's API key, as the backend's
    # do: a release refusing them broke its contract (docs/metrics.md, "Canary outcomes").
    key, port = "canary-drill-key-" + "k" * 24, free_port()
    (tmp_path / "data").mkdir()
    log = (tmp_path / "engine.log").open("wb")
    engine = subprocess.Popen(
        [sys.executable, "-c", _SERVE_CANARY, str(port), key, str(tmp_path / "data")],
        cwd=REPO,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("the canary engine serves", lambda: _serving(url))
        drill = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "simulate_canary_load.py"), "--url",
             f"{url}/infer", "--api-key", key, "--qps", "40", "--duration", "2",
             "--error-rate", "0.05", "--no-progress", "--json"],
            check=False, capture_output=True, text=True, timeout=120, env=clean_env(),
        )  # fmt: skip
        counted = _canary_counts(httpx.get(f"{url}/metrics", timeout=5).text)
    finally:
        engine.terminate()
        engine.wait(timeout=15)
        log.close()
    assert drill.returncode == 0, drill.stderr
    summary = json.loads(drill.stdout)
    assert summary["injected_bad"] >= 3 and summary["by_status"]["422"] == summary["injected_bad"]
    assert counted == {
        "ok": summary["sent"] - summary["injected_bad"],
        "error": summary["injected_bad"],
    }
    assert _error_rate_analysis(counted, tmp_path) == [{"labels": "{}", "value": 1}]


def _serving(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/health", timeout=1).json()["model_loaded"])
    except (httpx.HTTPError, ValueError):
        return False


def _canary_counts(text: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "aegis_canary_requests":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["track"] == "canary":
                    counts[sample.labels["outcome"]] = sample.value
    return {outcome: value for outcome, value in counts.items() if value}
