"""k8s/argo-rollouts/example-rollout.yaml: an Argo canary of the AI engine whose analysis reads
only metrics Aegis exports and aborts (rolls back) at the thresholds of the canary alerts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

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
