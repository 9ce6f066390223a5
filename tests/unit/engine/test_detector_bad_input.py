"""Bad input to the detector: documented handling, never a crash or a hang."""

from __future__ import annotations

import numpy as np
import pytest

from aegis.engine import detectors


def _series(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    ts = np.datetime64("2024-01-01T00:00:00") + np.arange(n) * np.timedelta64(60, "s")
    return ts, 10 + rng.normal(0, 1, n)


def test_nan_and_inf_values_score_zero_and_teach_nothing() -> None:
    ts, values = _series(600)
    bad_at = [50, 51, 300, 599]
    dirty = values.copy()
    dirty[bad_at] = [np.nan, np.inf, -np.inf, np.nan]

    scores = detectors.create().score_series(ts, dirty)
    keep = np.setdiff1d(np.arange(600), bad_at)
    clean = detectors.create().score_series(ts[keep], values[keep])

    assert np.all(scores[bad_at] == 0.0)
    assert np.array_equal(scores[keep], clean)


def test_non_numeric_values_are_treated_as_missing() -> None:
    scores = detectors.create().score_series(None, ["1", "x", None, "2.5", 3])

    assert scores.shape == (5,)
    assert scores[1] == scores[2] == 0.0


def test_huge_values_never_produce_nan_scores() -> None:
    ts, values = _series(500)
    values[[100, 200, 300]] = [1e308, -1e308, 1e300]

    scores = detectors.create().score_series(ts, values)

    assert np.all(np.isfinite(scores))
    assert np.all((scores >= 0.0) & (scores <= 1.0))


def test_missing_timestamps_are_scored_without_the_time_of_day_signal() -> None:
    ts, values = _series(600)
    ts = ts.copy()
    ts[::7] = np.datetime64("NaT")
    detector = detectors.create()

    scores = detector.score_series(ts, values)
    one = detector.update(None, 10.0)

    assert np.all(np.isfinite(scores)) and np.isfinite(one)


def test_no_timestamps_at_all_is_allowed() -> None:
    _, values = _series(400)

    assert detectors.create().score_series(None, values).shape == (400,)


def test_out_of_order_and_repeated_timestamps_are_scored_in_arrival_order() -> None:
    ts, values = _series(800)
    shuffled = ts[np.random.default_rng(1).permutation(800)]
    shuffled[10:20] = shuffled[10]

    streaming = detectors.create()
    one_by_one = [streaming.update(t, v) for t, v in zip(shuffled, values, strict=True)]

    assert np.array_equal(np.array(one_by_one), detectors.create().score_series(shuffled, values))


def test_empty_series_gives_empty_scores() -> None:
    assert detectors.create().score_series([], []).shape == (0,)
    result = detectors.score_window([], [])
    assert result.score == 0.0 and result.drivers.size == 0


def test_lengths_that_differ_are_refused() -> None:
    ts, values = _series(10)

    with pytest.raises(detectors.InvalidSeries, match="9 timestamps for 10 values"):
        detectors.create().score_series(ts[:9], values)


def test_two_dimensional_values_are_refused() -> None:
    with pytest.raises(detectors.InvalidSeries, match="one-dimensional"):
        detectors.create().score_series(None, np.zeros((3, 3)))


def test_a_million_points_are_scored_in_one_pass() -> None:
    n = 1_000_000
    ts = np.int64(1_600_000_000) + np.arange(n, dtype=np.int64) * 60
    values = np.sin(np.arange(n) / 500.0) + np.random.default_rng(5).normal(0, 0.1, n)
    values[::100_003] = np.nan

    scores = detectors.create().score_series(ts, values)

    assert scores.shape == (n,)
    assert np.all(np.isfinite(scores)) and scores.max() <= 1.0
