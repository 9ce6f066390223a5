"""What Aegis exports, and which metric names a PromQL expression reads.

The exported names come from importing ``aegis.core.metrics`` and walking its prometheus-client
collectors, with the suffixes prometheus-client adds on exposition (``_total`` for counters,
``_bucket``/``_sum``/``_count`` for histograms, ``_created`` for both).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

import aegis.core.metrics
from tests.support.promstack import RULES_FILE

# Series every Prometheus has without Aegis exporting them.
STANDARD_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
# Series of kube-state-metrics (a prerequisite of the backup alerts, docs/operations/alerts.md)
# the alert rules may read, named as its docs name them (docs/metrics/workload/job-metrics.md
# and cronjob-metrics.md of kubernetes/kube-state-metrics).
KUBE_STATE_METRICS_SERIES = frozenset(
    {
        "kube_job_owner",
        "kube_job_failed",
        "kube_job_status_start_time",
        "kube_cronjob_created",
        "kube_cronjob_status_last_successful_time",
    }
)

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


@dataclass(frozen=True)
class ExportedMetric:
    name: str  # the documented name: counters with _total, histograms without suffix
    type: str
    labels: tuple[str, ...]
    series: tuple[str, ...]  # every name that appears on /metrics


def exported_metrics() -> dict[str, ExportedMetric]:
    """Every metric declared in aegis.core.metrics, by documented name."""
    found: dict[str, ExportedMetric] = {}
    for obj in vars(aegis.core.metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        family = next(iter(obj.describe()))
        series = tuple(family.name + suffix for suffix in _SUFFIXES[family.type])
        name = family.name + "_total" if family.type == "counter" else family.name
        found[name] = ExportedMetric(
            name=name, type=family.type, labels=tuple(obj._labelnames), series=series
        )
    return found


def alert_rules() -> dict[str, dict[str, Any]]:
    """The alerting rules of k8s/prometheus/alert-rules.yaml, by alert name."""
    doc = yaml.safe_load(RULES_FILE.read_text())
    return {
        rule["alert"]: rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule
    }


def exported_series() -> frozenset[str]:
    return frozenset(s for metric in exported_metrics().values() for s in metric.series)


# PromQL words that look like identifiers but are not metric names.
_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
        "bool", "offset", "atan2", "inf", "nan",
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile",
    }
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*")
_GRAFANA_DURATION = re.compile(r"\$(?:__rate_interval|__interval|__range)\b|\$\{__\w+\}")
_GRAFANA_VAR = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (function and label names are left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if word in _KEYWORDS or rest.startswith("("):
            continue
        names.add(word)
    return names


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced so that promtool can parse it."""
    return _GRAFANA_VAR.sub("x", _GRAFANA_DURATION.sub("5m", expr))


def promtool_check_exprs(promtool: str, exprs: Iterable[str], workdir: Path) -> None:
    """Have ``promtool check rules`` parse each expression (as a recording rule); raise if not."""
    rules = [{"record": f"aegis_check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = workdir / "exprs.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"promtool rejected an expression:\n{result.stdout}{result.stderr}")
