"""Scoring one incident: symptoms, severity, recommendations, drivers; bad input; determinism."""

from __future__ import annotations

import copy
import gc
import json
import math
import tracemalloc
from typing import Any

import numpy as np
import pytest

from aegis.engine import model, scoring, synthetic
from aegis.engine.errors import ScoringFailed
from aegis.engine.recommender import OutcomeStats
from aegis.engine.schemas import Incident, IncidentPrediction


@pytest.fixture(scope="module")
def prepared() -> scoring.PreparedModel:
    return scoring.prepare(model.train())


def _score(prepared: scoring.PreparedModel, doc: dict[str, Any]) -> IncidentPrediction:
    return scoring.score_incident(prepared, Incident.model_validate(doc))


def _series(
    name: str, values: list[float], start: float = 1.8e9, step: float = 15.0
) -> dict[str, Any]:
    return {"name": name, "points": [[start + i * step, v] for i, v in enumerate(values)]}


def _top(prediction: IncidentPrediction) -> str:
    return prediction.recommendations[0].action


def test_crash_loop_calls_for_deleting_the_pod_or_restarting(
    prepared: scoring.PreparedModel,
) -> None:
    p = _score(prepared, synthetic.incident("crash_loop", 1))

    assert p.incident_kind == "crash_loop"
    assert p.severity.level == "critical"
    assert [r.action for r in p.recommendations[:2]] == ["delete_pod", "restart_deployment"]
    assert p.recommendations[0].target.name == "web-5d4f8b7c9-00001"
    assert any(e.kind == "new" and "panic:" in e.template for e in p.logs.evidence)


def test_memory_leak_calls_for_a_restart(prepared: scoring.PreparedModel) -> None:
    p = _score(prepared, synthetic.incident("memory_leak", 2))

    assert p.incident_kind == "memory_leak"
    assert _top(p) == "restart_deployment"
    assert "grew" in p.recommendations[0].explanation


def test_latency_with_high_load_calls_for_scaling_up(prepared: scoring.PreparedModel) -> None:
    p = _score(prepared, synthetic.incident("saturation", 3))

    top = p.recommendations[0]
    assert p.incident_kind == "saturation"
    assert top.action == "scale_deployment"
    assert top.params["replicas"] > 3  # the incident says 3 replicas run now
    assert "scale from 3 to" in top.explanation.lower()


def test_error_spike_after_a_deploy_calls_for_rollback_to_the_previous_revision(
    prepared: scoring.PreparedModel,
) -> None:
    p = _score(prepared, synthetic.incident("bad_deploy", 4))

    top = p.recommendations[0]
    assert p.incident_kind == "bad_deploy"
    assert top.action == "rollback_deployment"
    assert top.params == {"revision": 41}
    assert "deploy" in top.explanation


def test_errors_from_a_failing_dependency_call_for_no_action(
    prepared: scoring.PreparedModel,
) -> None:
    p = _score(prepared, synthetic.incident("dependency", 5))

    assert p.incident_kind == "dependency_failure"
    assert _top(p) == "none"


def test_a_quiet_incident_is_info_and_calls_for_nothing(prepared: scoring.PreparedModel) -> None:
    p = _score(prepared, synthetic.incident("quiet", 6))

    assert p.severity.level == "info"
    assert p.incident_kind == "unknown"
    assert [r.action for r in p.recommendations] == ["none"]


def test_every_confidence_is_in_the_unit_interval_and_explained(
    prepared: scoring.PreparedModel,
) -> None:
    for doc in synthetic.incidents(12):
        p = _score(prepared, doc)
        for r in p.recommendations:
            assert 0.0 <= r.confidence <= 1.0
            assert r.explanation
        assert p.recommendations == sorted(p.recommendations, key=lambda r: -r.confidence)


def test_severity_follows_the_alert_label_when_there_is_no_other_evidence(
    prepared: scoring.PreparedModel,
) -> None:
    def level(severity: str) -> tuple[str, float]:
        doc = {"alert": {"labels": {"alertname": "Something", "severity": severity}}}
        p = _score(prepared, doc)
        return p.severity.level, p.severity.score

    critical, warning, info = level("critical"), level("warning"), level("info")

    assert critical[1] > warning[1] > info[1]
    assert info[0] == "info"


def test_strong_evidence_raises_severity_above_the_alert_label(
    prepared: scoring.PreparedModel,
) -> None:
    doc = synthetic.incident("crash_loop", 7)
    doc["alert"]["labels"]["severity"] = "info"

    p = _score(prepared, doc)

    assert p.severity.level == "critical"
    assert any("crash_loop" in reason for reason in p.severity.reasons)


def test_drivers_point_at_the_anomalous_points_by_their_request_position(
    prepared: scoring.PreparedModel,
) -> None:
    rng = np.random.default_rng(0)
    values = (10 + rng.normal(0, 0.2, 200)).tolist()
    values[150] = 60.0
    doc = {"series": [_series("queue_depth", values)]}
    shuffled = copy.deepcopy(doc)
    shuffled["series"][0]["points"].reverse()  # out of order: sorted by time before scoring

    p, q = _score(prepared, doc), _score(prepared, shuffled)

    assert p.series[0].drivers[0].index == 150
    assert p.series[0].drivers[0].value == 60.0
    assert q.series[0].reordered and not p.series[0].reordered
    assert q.series[0].drivers[0].index == 199 - 150
    assert q.series[0].score == p.series[0].score


def test_missing_and_non_finite_values_are_missing_points_never_nan_output(
    prepared: scoring.PreparedModel,
) -> None:
    points: list[list[float | None]] = [[1.8e9 + i * 15, 10.0 + (i % 3)] for i in range(120)]
    points[10][1] = math.nan
    points[11][1] = math.inf
    points[12][1] = None
    points[13][0] = None  # no timestamp: keeps its place
    points[14][0] = math.nan
    doc = {"series": [{"name": "cpu", "points": points}, {"name": "empty", "points": []}]}

    p = _score(prepared, doc)

    cpu, empty = p.series
    assert cpu.missing_points == 3 and cpu.points == 120
    assert empty.score == 0.0 and empty.drivers == [] and empty.points == 0
    json.loads(p.model_dump_json())  # strict JSON: no NaN or Infinity anywhere
    assert all(d.timestamp is None or math.isfinite(d.timestamp) for d in cpu.drivers)


def test_huge_values_are_clipped_not_propagated(prepared: scoring.PreparedModel) -> None:
    values = [1.0] * 100 + [1e308, -1e308] + [1.0] * 20

    p = _score(prepared, {"series": [_series("cpu_usage", values)]})

    assert math.isfinite(p.severity.score)
    assert all(math.isfinite(d.value) for d in p.series[0].drivers)


def test_a_prediction_does_not_depend_on_its_batch(prepared: scoring.PreparedModel) -> None:
    docs = synthetic.incidents(18, seed=3)
    alone = [_score(prepared, d).model_dump_json() for d in docs]

    together = scoring.score_batch(prepared, [(Incident.model_validate(d), {}) for d in docs])
    reversed_batch = scoring.score_batch(
        prepared, [(Incident.model_validate(d), {}) for d in reversed(docs)]
    )

    assert [r.model_dump_json() for r in together] == alone  # type: ignore[union-attr]
    assert [r.model_dump_json() for r in reversed(reversed_batch)] == alone  # type: ignore[union-attr]


def test_an_admitted_incident_scores_exactly_as_the_parsed_one(
    prepared: scoring.PreparedModel,
) -> None:
    docs = synthetic.incidents(8, seed=5)
    docs[0]["logs"] = [
        "plain line 42",
        {"message": "two\nlines at 10.0.0.1", "timestamp": None},
        {"message_b64": "aGVsbG8g/w=="},  # b"hello \xff": not UTF-8
        {"message": "dated", "timestamp": "2027-01-15T09:00:00Z"},
    ]
    parsed = [Incident.model_validate(d) for d in docs]

    admitted = [scoring.admit(inc) for inc in parsed]
    as_parsed = scoring.score_batch(prepared, [(inc, {}) for inc in parsed])
    as_admitted = scoring.score_batch(prepared, [(a, {}) for a in admitted])

    assert [r.model_dump_json() for r in as_admitted] == [  # type: ignore[union-attr]
        r.model_dump_json()  # type: ignore[union-attr]
        for r in as_parsed
    ]
    assert admitted[0].incident.logs == []
    assert admitted[0].logs.texts == [
        "plain line 42",
        "two lines at 10.0.0.1",
        "hello \ufffd",
        "dated",
    ]
    assert admitted[0].logs.times == [None, None, None, 1_800_003_600.0]


def _tracked_reachable(root: object) -> int:
    """Containers the garbage collector walks in ``root``'s data (lists, dicts, sets, tuples and
    Aegis's own models and records; classes, functions and modules aside)."""
    seen: dict[int, object] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        kind = type(obj)
        data = kind in (list, dict, set, tuple) or kind.__module__.startswith("aegis.")
        if id(obj) in seen or not data:
            continue
        seen[id(obj)] = obj
        stack.extend(gc.get_referents(obj))
    return sum(1 for obj in seen.values() if gc.is_tracked(obj))


def test_a_queued_incident_holds_its_log_lines_in_two_lists() -> None:
    # What waits in the batch queue is walked by every full garbage collection while it waits:
    # 120 parsed log lines are over 240 objects, the admitted form a handful.
    parsed = Incident.model_validate(synthetic.columnar(synthetic.incident("crash_loop", 2)))
    assert len(parsed.logs) >= 100

    admitted = scoring.admit(parsed)
    gc.collect()  # tuples holding only numbers stop being tracked on their first collection

    assert _tracked_reachable(admitted) * 4 < _tracked_reachable(parsed)
    assert len(admitted.logs.texts) == len(parsed.logs)


def test_columnar_series_score_exactly_as_their_points(prepared: scoring.PreparedModel) -> None:
    points: list[list[float | None]] = [[1.8e9 + i * 15, 10.0 + (i % 3)] for i in range(120)]
    points[10][1], points[11][1], points[12][0] = math.nan, None, None
    points[40], points[41] = points[41], points[40]  # out of order
    odd = {"series": [{"name": "cpu", "points": points}, {"name": "empty", "points": []}]}
    docs = [*synthetic.incidents(6, seed=11), odd]
    as_points = [Incident.model_validate(d) for d in docs]
    as_columns = [Incident.model_validate(synthetic.columnar(d)) for d in docs]
    assert all(s.columnar for inc in as_columns for s in inc.series)

    mixed: list[tuple[Incident, OutcomeStats]] = [
        (inc, {}) for pair in zip(as_points, as_columns, strict=True) for inc in pair
    ]  # both forms side by side in one batch
    results = [r.model_dump_json() for r in scoring.score_batch(prepared, mixed)]  # type: ignore[union-attr]

    assert results[0::2] == results[1::2]
    assert json.loads(results[-1])["series"][0]["reordered"] is True


def test_the_lockstep_kernel_and_the_reference_detector_give_the_same_predictions() -> None:
    trained = model.train()
    fast, reference = (
        scoring.prepare(trained, use_kernel=True),
        scoring.prepare(trained, use_kernel=False),
    )
    items: list[tuple[Incident, OutcomeStats]] = [
        (Incident.model_validate(d), {}) for d in synthetic.incidents(24, seed=9)
    ]

    got = [r.model_dump_json() for r in scoring.score_batch(fast, items)]  # type: ignore[union-attr]
    want = [r.model_dump_json() for r in scoring.score_batch(reference, items)]  # type: ignore[union-attr]

    assert got == want


def test_the_shipped_model_uses_the_lockstep_kernel(prepared: scoring.PreparedModel) -> None:
    # If this fails the detector changed: batching still gives the same answers (the engine
    # falls back to the reference loop) but is no longer cheaper per item. Update lockstep.py.
    assert prepared.use_kernel


def test_a_failing_item_fails_alone_and_the_others_are_scored(
    prepared: scoring.PreparedModel,
) -> None:
    good = Incident.model_validate(synthetic.incident("saturation", 1))
    broken_stats: Any = {("saturation", "scale_deployment"): {"successes": "many"}}  # a caller bug

    results = scoring.score_batch(prepared, [(good, {}), (good, broken_stats), (good, {})])

    assert isinstance(results[1], ScoringFailed)
    assert isinstance(results[0], IncidentPrediction)
    assert isinstance(results[2], IncidentPrediction)
    assert results[0].model_dump_json() == results[2].model_dump_json()


def test_a_long_series_is_scored(prepared: scoring.PreparedModel) -> None:
    rng = np.random.default_rng(1)
    values = (5 + rng.normal(0, 1, 20_000)).tolist()
    values[-100] = 50.0

    p = _score(prepared, {"series": [_series("latency_p99", values)]})

    assert p.series[0].points == 20_000
    assert p.series[0].drivers[0].index == 19_900


def test_one_long_series_does_not_pad_every_other_series_of_its_batch_to_its_length(
    prepared: scoring.PreparedModel,
) -> None:
    # 256 series, one of 20,000 points and the rest of one: a batch of about 20,000 points.
    # Stacked as one (series, longest) array it was 5M cells (40 MB) per array, 250 MB at the
    # peak (about 2 MB now); at 32 incidents of 64 series, a 100 kB request, 1.7 GB and seconds.
    tiny = [_series(f"m{i}", [1.0]) for i in range(63)]
    docs = [{"series": [_series("cpu", [1.0] * 20_000), *tiny]}] + [{"series": tiny}] * 3
    items: list[tuple[Incident, OutcomeStats]] = [(Incident.model_validate(d), {}) for d in docs]
    alone = [_score(prepared, d).model_dump_json() for d in docs]

    tracemalloc.start()
    try:
        together = scoring.score_batch(prepared, items)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert [r.model_dump_json() for r in together] == alone  # type: ignore[union-attr]
    assert peak < 16 << 20


def test_log_lines_sent_as_base64_bytes_are_decoded_with_replacement(
    prepared: scoring.PreparedModel,
) -> None:
    import base64

    raw = b"FATAL out of memory \xff\xfe in worker"
    lines: list[Any] = [{"message": f"INFO ok {i}", "timestamp": 1.8e9 + i} for i in range(40)]
    lines += [
        {"message_b64": base64.b64encode(raw).decode(), "timestamp": 1.8e9 + 100 + i}
        for i in range(5)
    ]

    p = _score(prepared, {"logs": lines})

    oom = [e for e in p.logs.evidence if "out_of_memory" in e.signatures]
    assert oom and "\ufffd" in oom[0].example
    assert any(s.name == "oom" for s in p.symptoms)
