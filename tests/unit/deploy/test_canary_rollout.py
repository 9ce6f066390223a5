"""k8s/argo-rollouts/example-rollout.yaml: an Argo canary of the AI engine whose analysis reads
only metrics Aegis exports and aborts (rolls back) at the thresholds of the canary alerts."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.integration.observability.promql import (
    STANDARD_SERIES,
    alert_rules,
    exported_series,
    metric_names,
    promtool_check_exprs,
)
from tests.support import promstack
from tests.unit.deploy.manifests import HELM, K8S, base_objects, by_name, load_docs

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
    promtool = promstack.promtool_binary()
    require(promtool is not None, "promtool is not installed (Debian package: prometheus)")
    assert promtool is not None
    per_minute, expected = ERROR_RATE_CASES[case]
    metric = METRICS["canary-error-rate"]
    query = metric["provider"]["prometheus"]["query"]
    limit = _threshold(metric["failureCondition"], r"result\[0\]\s*>\s*([0-9.]+)")
    series = [
        {
            "series": f'aegis_canary_requests_total{{track="canary", outcome="{outcome}"}}',
            "values": f"0+{count}x20",
        }
        for outcome, count in per_minute.items()
    ]
    # The failureCondition, evaluated as Prometheus answers the query: 1 fails the measurement.
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
    assert result.returncode == 0, result.stdout + result.stderr


def test_rollout_autoscaler_targets_the_rollout() -> None:
    (hpa,) = by_name(DOCS, "HorizontalPodAutoscaler").values()
    target: dict[str, Any] = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Rollout", ROLLOUT["metadata"]["name"])


@pytest.mark.parametrize("name", ["canary-error-rate", "canary-latency-p95"])
def test_no_traffic_is_inconclusive_not_success(name: str) -> None:
    # An empty result matches neither condition: Argo marks it inconclusive and pauses.
    metric = METRICS[name]
    for condition in (metric["successCondition"], metric["failureCondition"]):
        assert condition.startswith("len(result) > 0 &&"), condition
