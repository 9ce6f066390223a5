"""docs/metrics.md's table lists exactly the metrics declared in aegis.core.metrics."""

from __future__ import annotations

import re

from aegis.executor.service import OUTCOMES
from tests.integration.observability.promql import ExportedMetric, exported_metrics
from tests.support.promstack import REPO

METRICS_DOC = REPO / "docs" / "metrics.md"
HEADER = "| Metric | Type | Labels | Service | Meaning |"


def _documented() -> dict[str, tuple[str, tuple[str, ...], str, str]]:
    lines = METRICS_DOC.read_text().splitlines()
    start = lines.index(HEADER) + 2  # skip the header and its |---| line
    rows: dict[str, tuple[str, tuple[str, ...], str, str]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 5, f"malformed row: {line}"
        name, kind, labels, service, meaning = cells
        name = name.strip("`")
        assert name not in rows, f"{name} is listed twice"
        rows[name] = (kind, tuple(re.findall(r"`(\w+)`", labels)), service, meaning)
    return rows


def _row_for(metric: ExportedMetric) -> str:
    labels = ", ".join(f"`{label}`" for label in metric.labels)
    return f"| `{metric.name}` | {metric.type} | {labels} | <service> | <meaning> |"


def test_every_declared_metric_is_documented() -> None:
    missing = [m for name, m in exported_metrics().items() if name not in _documented()]
    assert not missing, "add to docs/metrics.md:\n" + "\n".join(_row_for(m) for m in missing)


def test_every_documented_metric_is_declared() -> None:
    extra = set(_documented()) - set(exported_metrics())
    assert not extra, f"docs/metrics.md lists metrics src/aegis/core/metrics.py lacks: {extra}"


def test_documented_type_and_labels_match_the_declaration() -> None:
    documented = _documented()
    for name, metric in exported_metrics().items():
        kind, labels, service, meaning = documented[name]
        assert kind == metric.type, name
        assert labels == metric.labels, name
        assert service and meaning, name


def test_every_executor_outcome_is_documented() -> None:
    _, _, _, meaning = _documented()["aegis_executor_actions_total"]
    assert set(OUTCOMES) <= set(re.findall(r"`(\w+)`", meaning)), meaning
