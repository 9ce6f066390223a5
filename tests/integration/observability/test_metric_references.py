"""Dashboards and alert rules name only metrics Aegis exports (the backup alerts also
kube-state-metrics' Job and CronJob series); dashboards are valid Grafana JSON.

Exported names come from importing aegis.core.metrics (prometheus-client's collectors, with the
suffixes they get on /metrics). Each expression is parsed by promtool (Grafana variables
replaced) and its metric names are extracted and looked up.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.observability.promql import (
    KUBE_STATE_METRICS_SERIES,
    STANDARD_SERIES,
    alert_rules,
    exported_series,
    grafana_to_promql,
    metric_names,
    promtool_check_exprs,
)
from tests.support.promstack import REPO

GRAFANA_DIR = REPO / "observability" / "grafana"
DASHBOARDS = ["aegis-overview", "aegis-inference", "aegis-safety", "aegis-executor-audit"]
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
KNOWN = exported_series() | STANDARD_SERIES


def _dashboard(name: str) -> dict[str, Any]:
    return dict(json.loads((GRAFANA_DIR / f"{name}.json").read_text()))


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return [p for p in panels if p["type"] != "row"]


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in _panels(dashboard) for t in p["targets"]]


_LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


def _variable_selectors(dashboard: dict[str, Any]) -> list[str]:
    selectors = []
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = _LABEL_VALUES.match(query.strip())
        assert match, f"unsupported variable query {query!r}"
        if match.group(1):
            selectors.append(match.group(1))
    return selectors


# --- the exported names ----------------------------------------------------------------------


def test_exported_names_carry_the_exposition_suffixes() -> None:
    names = exported_series()
    assert "aegis_model_signature_errors_total" in names  # Counter("aegis_model_signature_errors")
    assert "aegis_http_requests_total" in names  # Counter("aegis_http_requests_total")
    assert {"aegis_inference_latency_seconds_bucket", "aegis_inference_latency_seconds_sum",
            "aegis_inference_latency_seconds_count"} <= names  # fmt: skip
    assert "aegis_model_loaded" in names
    assert "aegis_model_signature_errors" not in names
    assert "aegis_inference_latency_seconds" not in names


# --- the extractor ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (service) (rate(aegis_http_requests_total{status=~"5.."}[5m]))',
         {"aegis_http_requests_total"}),
        ('histogram_quantile(0.95, sum by (job, le) (rate(x_bucket{job="a"}[$__rate_interval])))',
         {"x_bucket"}),
        ("up == 1 unless on (job, instance) max by (job, instance) (m) > 0", {"up", "m"}),
        ("avg_over_time((sum(rate(a[5m])) or (vector(0) and count(up offset 5m)))[1h:1m] "
         "offset 5m)", {"a", "up"}),
        ('sum without (instance) (b) / ignoring (le) group_left c * 1e3', {"b", "c"}),
        ('ALERTS{alertname=~"Aegis.*", severity="critical"}', {"ALERTS"}),
    ],
)  # fmt: skip
def test_metric_names_are_extracted_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_an_unknown_metric_is_caught() -> None:
    unknown = metric_names("sum(rate(aegis_requests_totl[5m]))") - KNOWN
    assert unknown == {"aegis_requests_totl"}


# --- alert rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(alert_rules()))
def test_alert_rule_reads_only_exported_metrics(name: str) -> None:
    names = metric_names(alert_rules()[name]["expr"])
    assert names, "no metric found in the expression"
    known = KNOWN | KUBE_STATE_METRICS_SERIES  # the backup alerts watch CronJobs through it
    assert names <= known, sorted(names - known)


# --- dashboards ------------------------------------------------------------------------------


def test_the_four_dashboards_exist_with_unique_uids() -> None:
    present = sorted(p.stem for p in GRAFANA_DIR.glob("*.json"))
    assert present == sorted(DASHBOARDS)
    uids = [_dashboard(name)["uid"] for name in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_is_grafana_json_on_a_prometheus_datasource_variable(name: str) -> None:
    dashboard = _dashboard(name)
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["title"] and dashboard["uid"] == name
    assert "id" not in dashboard or dashboard["id"] is None  # importable into any Grafana
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = _panels(dashboard)
    assert panels
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    for panel in panels:
        assert panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            assert target["expr"].strip()


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_panels_fit_the_grid_without_overlap(name: str) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _panels(_dashboard(name)):
        pos = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["y"] >= 0
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_reads_only_exported_metrics(name: str) -> None:
    dashboard = _dashboard(name)
    for expr in _exprs(dashboard) + _variable_selectors(dashboard):
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        assert names <= KNOWN, f"{sorted(names - KNOWN)} in {expr!r}"


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_variables_are_used(name: str) -> None:
    dashboard = _dashboard(name)
    text = json.dumps(_panels(dashboard))
    for var in dashboard["templating"]["list"]:
        assert f"${var['name']}" in text or f"${{{var['name']}}}" in text, var["name"]


def test_promtool_parses_every_dashboard_expression(promtool: str, tmp_path: Path) -> None:
    exprs = [grafana_to_promql(e) for name in DASHBOARDS for e in _exprs(_dashboard(name))]
    promtool_check_exprs(promtool, exprs, tmp_path)


def test_promtool_check_catches_a_broken_expression(promtool: str, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="promtool rejected"):
        promtool_check_exprs(promtool, ["sum(rate(up[5m])"], tmp_path)
