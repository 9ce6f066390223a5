"""The recommender: knowledge-base priors, learning from outcomes, ranking, parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.engine import model
from aegis.engine.knowledge import default_knowledge_base, runbook_table
from aegis.engine.recommender import Features, Outcome, OutcomeStats, recommend, update_stats

MODEL = model.train()
SATURATION = Features(
    symptoms={"latency_high": 0.9, "cpu_high": 0.8},
    evidence={"latency_high": ["p99 +150%"], "cpu_high": ["cpu +80%"]},
    namespace="demo",
    deployment="web",
    replicas=4,
    load_factor=1.6,
)


def _confidence(features: Features, stats: OutcomeStats, action: str) -> float:
    _, recs = recommend(features, stats, model=MODEL)
    return next(r.confidence for r in recs if r.action == action)


def _record(
    stats: OutcomeStats,
    outcome: Outcome,
    times: int,
    kind: str = "saturation",
    action: str = "scale_deployment",
) -> OutcomeStats:
    for _ in range(times):
        stats = update_stats(stats, incident_kind=kind, action=action, outcome=outcome)
    return stats


def test_without_outcomes_confidence_is_the_runbook_prior_scaled_by_the_match() -> None:
    kind, recs = recommend(SATURATION, {}, model=MODEL)

    top = recs[0]
    assert kind == "saturation"
    assert top.action == "scale_deployment" and top.rule == "saturation_cpu"
    assert top.prior == pytest.approx(0.8)
    assert top.confidence == pytest.approx(0.8 * 0.8)  # prior x match strength (weakest symptom)


def test_rejections_lower_the_confidence_of_that_action_for_that_kind() -> None:
    before = _confidence(SATURATION, {}, "scale_deployment")

    after = _confidence(SATURATION, _record({}, "rejected", 3), "scale_deployment")

    assert after < before


def test_actions_that_did_not_resolve_the_incident_lose_confidence() -> None:
    stats = _record({}, "not_resolved", 1)
    worse = _record(stats, "not_resolved", 4)

    assert (
        _confidence(SATURATION, worse, "scale_deployment")
        < _confidence(SATURATION, stats, "scale_deployment")
        < _confidence(SATURATION, {}, "scale_deployment")
    )


def test_resolutions_raise_the_confidence() -> None:
    before = _confidence(SATURATION, {}, "scale_deployment")

    after = _confidence(SATURATION, _record({}, "resolved", 5), "scale_deployment")

    assert after > before


def test_enough_failures_change_the_ranking() -> None:
    features = Features(
        symptoms={"crash_loop": 1.0}, pod="web-1", deployment="web", namespace="demo"
    )
    assert recommend(features, {}, model=MODEL)[1][0].action == "delete_pod"

    stats = _record({}, "not_resolved", 10, kind="crash_loop", action="delete_pod")

    assert recommend(features, stats, model=MODEL)[1][0].action == "restart_deployment"


def test_outcomes_of_another_kind_or_action_change_nothing() -> None:
    stats = _record({}, "rejected", 5, kind="oom")
    stats = _record(stats, "rejected", 5, action="restart_deployment")

    assert _confidence(SATURATION, stats, "scale_deployment") == _confidence(
        SATURATION, {}, "scale_deployment"
    )


def test_update_stats_returns_new_counts_and_leaves_its_input_alone() -> None:
    original = {("oom", "delete_pod"): {"successes": 1, "failures": 2}}

    updated = update_stats(original, incident_kind="oom", action="delete_pod", outcome="resolved")

    assert original == {("oom", "delete_pod"): {"successes": 1, "failures": 2}}
    assert updated[("oom", "delete_pod")] == {"successes": 2, "failures": 2}


def test_unknown_outcomes_and_actions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        update_stats({}, incident_kind="oom", action="delete_pod", outcome="approved")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown action"):
        update_stats({}, incident_kind="oom", action="reboot_node", outcome="resolved")


@settings(max_examples=60, deadline=None)
@given(
    successes=st.integers(min_value=0, max_value=10**9),
    failures=st.integers(min_value=0, max_value=10**9),
    strength=st.floats(min_value=0.0, max_value=1.0),
)
def test_confidence_stays_in_the_unit_interval(
    successes: int, failures: int, strength: float
) -> None:
    features = Features(symptoms={"latency_high": strength, "cpu_high": 1.0}, replicas=2)
    stats = {("saturation", "scale_deployment"): {"successes": successes, "failures": failures}}

    _, recs = recommend(features, stats, model=MODEL)

    assert all(0.0 <= r.confidence <= 1.0 for r in recs)


def test_ranking_is_deterministic_and_by_confidence() -> None:
    features = Features(symptoms={"oom": 0.9, "memory_leak": 0.9, "crash_loop": 0.9})

    first = recommend(features, {}, model=MODEL)
    second = recommend(features, {}, model=MODEL)

    assert first == second
    confidences = [r.confidence for r in first[1]]
    assert confidences == sorted(confidences, reverse=True)


def test_with_no_matching_rule_doing_nothing_is_recommended() -> None:
    kind, recs = recommend(Features(symptoms={}), {}, model=MODEL)

    assert kind == "unknown"
    assert [r.action for r in recs] == ["none"]
    assert recs[0].confidence == pytest.approx(0.6)


def test_scaling_asks_for_more_replicas_within_the_cap() -> None:
    _, recs = recommend(SATURATION, {}, model=MODEL)
    assert recs[0].params == {"replicas": 7}  # ceil(4 x 1.6)

    at_cap = Features(symptoms=SATURATION.symptoms, replicas=50, load_factor=2.0)
    scale = next(r for r in recommend(at_cap, {}, model=MODEL)[1] if r.action == "scale_deployment")
    assert scale.params == {"replicas": 50} and scale.confidence == 0.0


def test_rollback_names_the_previous_revision_when_known() -> None:
    features = Features(symptoms={"error_spike": 1.0, "deploy_recent": 1.0}, rollback_revision=41)

    kind, recs = recommend(features, {}, model=MODEL)

    assert kind == "bad_deploy"
    assert recs[0].action == "rollback_deployment" and recs[0].params == {"revision": 41}


def test_historical_outcomes_given_to_training_shift_the_priors() -> None:
    history = {("saturation", "scale_deployment"): {"successes": 0, "failures": 40}}
    trained = model.train(outcomes=history)

    _, recs = recommend(SATURATION, {}, model=trained)

    scale = next(r for r in recs if r.action == "scale_deployment")
    assert scale.prior < 0.2
    assert scale.confidence < _confidence(SATURATION, {}, "scale_deployment")


def test_the_documented_runbook_is_the_knowledge_base() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "engine.md").read_text()

    assert runbook_table(default_knowledge_base()) in doc
