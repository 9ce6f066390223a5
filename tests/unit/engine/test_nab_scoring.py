"""The NAB scorer follows the v1.1 rules and reproduces the published check table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aegis.engine.nab import runner, scoring

NAB = Path(__file__).resolve().parents[2] / "data" / "nab"
LABELS = NAB / "labels" / "combined_windows.json"

# SCORING.md: the published results of two NAB detectors on the 51 public files (97 windows).
CHECK_TABLE = {
    "numenta": {"standard": 73.0, "reward_low_FP_rate": 66.6, "reward_low_FN_rate": 76.8},
    "windowedGaussian": {"standard": 44.8, "reward_low_FP_rate": 23.0, "reward_low_FN_rate": 53.6},
}


@pytest.fixture(scope="module")
def published() -> dict[str, runner.EvalReport]:
    return {
        detector: runner.score_results(
            detector_dir=NAB / "published_results" / detector, detector=detector, labels=LABELS
        )
        for detector in CHECK_TABLE
    }


@pytest.mark.parametrize("detector", sorted(CHECK_TABLE))
def test_scorer_reproduces_the_published_check_table(
    detector: str, published: dict[str, runner.EvalReport]
) -> None:
    report = published[detector]

    assert report.scored_files == 51
    assert report.windows == 97
    for profile, expected in CHECK_TABLE[detector].items():
        assert report.profiles[profile].normalised == pytest.approx(expected, abs=0.1), profile


def test_numenta_best_standard_threshold_matches_the_published_one(
    published: dict[str, runner.EvalReport],
) -> None:
    assert published["numenta"].profiles["standard"].threshold == pytest.approx(0.543, abs=0.001)


def _file(scores: list[float], windows: list[tuple[int, int]]) -> scoring.PreparedFile:
    """A 100-point file (probation: the first 15 points) with windows given by index."""
    ts = np.datetime64("2020-01-01T00:00:00") + np.arange(len(scores)) * np.timedelta64(60, "s")
    return scoring.prepare_file(
        "cat/f.csv", ts, np.array(scores, dtype=float), [(ts[a], ts[b]) for a, b in windows]
    )


def _raw(scores: list[float], windows: list[tuple[int, int]], threshold: float = 0.5) -> float:
    return scoring.score_file(_file(scores, windows), scoring.PROFILES["standard"], threshold).raw


def test_detection_at_window_start_earns_the_full_true_positive_weight() -> None:
    scores = [0.0] * 100
    scores[40] = 1.0

    assert _raw(scores, [(40, 59)]) == pytest.approx(1.0)


def test_later_detection_in_a_window_earns_less_and_only_the_best_counts() -> None:
    early, late, both = [0.0] * 100, [0.0] * 100, [0.0] * 100
    early[45] = late[55] = both[45] = both[55] = 1.0

    assert 0 < _raw(late, [(40, 59)]) < _raw(early, [(40, 59)])
    assert _raw(both, [(40, 59)]) == pytest.approx(_raw(early, [(40, 59)]))


def test_missed_window_costs_the_false_negative_weight() -> None:
    assert _raw([0.0] * 100, [(40, 59)]) == pytest.approx(-1.0)


def test_false_positive_before_any_window_costs_the_full_weight() -> None:
    scores = [0.0] * 100
    scores[20] = 1.0

    assert _raw(scores, []) == pytest.approx(-0.11)


def test_false_positive_right_behind_a_window_is_almost_free() -> None:
    near, far = [0.0] * 100, [0.0] * 100
    near[60] = far[99] = 1.0
    near[40] = far[40] = 1.0  # both detect the window

    near_cost = _raw(near, [(40, 59)]) - 1.0
    far_cost = _raw(far, [(40, 59)]) - 1.0
    assert -0.11 < far_cost < near_cost <= 0.0
    assert near_cost == pytest.approx(0.0, abs=0.02)


def test_detections_in_the_probationary_period_are_ignored() -> None:
    scores = [0.0] * 100
    scores[5] = 1.0  # probation is the first 15 points

    assert _raw(scores, []) == 0.0


def test_threshold_optimisation_prefers_no_detection_when_every_detection_costs() -> None:
    scores = [0.0] * 100
    scores[30] = 0.9  # a false positive, and no window

    result = scoring.optimise([_file(scores, [])], scoring.PROFILES["standard"])

    assert result.threshold == scoring.NO_DETECTION_THRESHOLD
    assert result.raw == 0.0


def test_normalisation_maps_null_to_zero_and_perfect_to_hundred() -> None:
    perfect = [0.0] * 100
    perfect[40] = 1.0

    best = scoring.optimise([_file(perfect, [(40, 59)])], scoring.PROFILES["standard"])
    null = scoring.optimise([_file([0.0] * 100, [(40, 59)])], scoring.PROFILES["standard"])

    assert best.normalised == pytest.approx(100.0)
    assert null.normalised == pytest.approx(0.0)
