"""The lockstep kernel gives exactly the detector's own scores, for any batch of series."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aegis.engine import detectors, lockstep, series

DEFAULTS = detectors.create("aegis").params
VARIANTS: list[dict[str, Any]] = [
    {},
    {"suppress_window": 3, "mean_window": 7, "warmup": 0},
    {"suppress_window": 33, "seasonal_bins": 24, "seasonal_min_visits": 1, "seasonal_warmup": 0},
    {"ew_warmup": 1, "seasonal_global_share": 0.0, "w_seasonal": 2.0, "score_scale": 0.5},
]


def _reference(params: dict[str, Any], ts: np.ndarray, vs: np.ndarray) -> np.ndarray:
    return detectors.create("aegis", params).score_series(ts, vs)


def _assert_kernel_matches(
    params: dict[str, Any], batch: list[tuple[lockstep.FloatArray, lockstep.FloatArray]]
) -> None:
    """The kernel over ``batch`` at once gives each series the detector's own scores, 0 after."""
    values, times = lockstep.pad(batch)

    got = lockstep.score_lockstep(values, times, params)

    for row, (ts, vs) in enumerate(batch):
        assert np.array_equal(got[row, : len(vs)], _reference(params, ts, vs)), row
        assert np.all(got[row, len(vs) :] == 0.0)


@pytest.mark.parametrize("change", VARIANTS)
def test_the_kernel_matches_the_detector_on_the_probe_set(change: dict[str, Any]) -> None:
    params = DEFAULTS | change

    assert lockstep.kernel_matches_reference(params, lambda ts, vs: _reference(params, ts, vs))


@pytest.mark.parametrize("change", VARIANTS)
def test_the_kernel_matches_the_detector_on_a_mixed_batch(change: dict[str, Any]) -> None:
    params = DEFAULTS | change
    rng = np.random.default_rng(42)
    batch = []
    for i in range(40):
        n = int(rng.integers(0, 700))
        ts = 1.8e9 + rng.integers(0, 86400) + np.cumsum(rng.uniform(1, 120, n))
        vs = rng.normal(rng.uniform(-50, 50), rng.uniform(0.01, 5), n)
        if i % 3 == 0 and n:
            vs[rng.integers(0, n, max(n // 10, 1))] = np.nan
        if i % 4 == 0 and n:
            ts[rng.integers(0, n, max(n // 7, 1))] = np.nan
        if i % 5 == 0 and n > 10:
            vs[n // 2 :] += rng.uniform(5, 50)
        batch.append((ts, vs))

    _assert_kernel_matches(params, batch)


@settings(max_examples=40, deadline=None)
@given(
    values=arrays(
        np.float64,
        st.integers(min_value=1, max_value=120),
        elements=st.one_of(
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
            st.just(float("nan")),
        ),
    ),
    step=st.floats(min_value=1.0, max_value=4000.0),
)
def test_the_kernel_matches_the_detector_on_arbitrary_series(
    values: lockstep.FloatArray, step: float
) -> None:
    params = DEFAULTS | {"warmup": 2, "ew_warmup": 2, "seasonal_warmup": 1, "mean_window": 3}
    ts: lockstep.FloatArray = 1.8e9 + np.arange(len(values), dtype=np.float64) * step
    padded_values, padded_times = lockstep.pad([(ts, values), (ts[:5], values[:5])])

    got = lockstep.score_lockstep(padded_values, padded_times, params)

    assert np.array_equal(got[0, : len(values)], _reference(params, ts, values))
    assert np.array_equal(got[1, : min(5, len(values))], _reference(params, ts[:5], values[:5]))


@pytest.mark.parametrize("change", VARIANTS)
def test_the_kernel_matches_the_detector_on_series_scraped_together(
    change: dict[str, Any],
) -> None:
    # What an incident batch looks like: series on one scrape step (so every row crosses into a
    # new time-of-day bin at the same point and the kernel holds the bins' state in between),
    # ending at different points, some with a missing value or timestamp.
    params = DEFAULTS | change
    rng = np.random.default_rng(7)
    step = 15.0
    start = 1.8e9 - 1.8e9 % 900 + 600.0  # ten minutes into a 15-minute bin
    batch = []
    for i in range(30):
        n = 900 - 20 * (i // 3)
        ts: lockstep.FloatArray = start + np.arange(n, dtype=np.float64) * step
        vs = rng.normal(rng.uniform(-50, 50), rng.uniform(0.01, 5), n)
        if i % 7 == 0:
            vs[n // 3] = np.nan
        if i % 11 == 0:
            ts[n // 2] = np.nan
        if i % 5 == 0:
            vs[n // 2 :] += rng.uniform(5, 50)
        batch.append((ts, vs))

    _assert_kernel_matches(params, batch)


def test_the_kernel_matches_the_detector_when_an_excess_overflows() -> None:
    # A range of a few subnormals, then a real value: the excess is past the largest double.
    params = DEFAULTS | {"warmup": 0, "ew_warmup": 2, "seasonal_warmup": 2}
    batch = [
        (1.8e9 + 60.0 * np.arange(len(vs), dtype=np.float64), np.asarray(vs, dtype=np.float64))
        for vs in ([0.0, 2.2250738585e-313, 1.0], [0.0, 1e-300, 1e300, 3.0], [5.0, 6.0, 7.0])
    ]

    _assert_kernel_matches(params, batch)
    got = lockstep.score_lockstep(*lockstep.pad(batch), params)
    assert np.all((got >= 0.0) & (got <= 1.0))


def test_an_unknown_detector_configuration_is_not_run_by_the_kernel() -> None:
    assert not lockstep.kernel_matches_reference(DEFAULTS | {"invented": 1}, lambda ts, vs: vs)
    assert not series.kernel_supported("other-detector", {})


def test_the_detectors_default_configuration_runs_on_the_kernel() -> None:
    # Fails when the detector's algorithm changed: the engine then falls back to the detector's
    # own loop (same answers, no batching speed-up) until lockstep.py follows the change.
    assert series.kernel_supported("aegis", DEFAULTS)
