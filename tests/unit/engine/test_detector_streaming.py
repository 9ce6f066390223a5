"""The streaming detector: update() and score_series() agree, state is bounded, params are data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.engine import detectors
from aegis.engine.nab.corpus import read_series

NAB_DATA = Path(__file__).resolve().parents[2] / "data" / "nab" / "data"


def _noisy_series(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = np.datetime64("2024-03-01T00:00:00") + np.arange(n) * np.timedelta64(300, "s")
    day = np.sin(np.arange(n) * 2 * np.pi / 288)
    return ts, 50 + 10 * day + rng.normal(0, 1, n)


def _state_size(state: dict[str, object]) -> int:
    return sum(len(v) if isinstance(v, list) else 1 for v in state.values())


def test_update_one_point_at_a_time_equals_score_series_on_a_nab_file() -> None:
    series = read_series(NAB_DATA / "realAWSCloudwatch" / "ec2_cpu_utilization_825cc2.csv.xz")
    streaming = detectors.create()

    one_by_one = [
        streaming.update(t, v) for t, v in zip(series.timestamps, series.values, strict=True)
    ]
    whole = detectors.create().score_series(series.timestamps, series.values)

    assert np.array_equal(np.array(one_by_one), whole)
    assert whole.max() >= 0.5  # the file has anomalies; the comparison is not all zeros


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(min_value=-1e3, max_value=1e3),
            st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0]),
        ),
        max_size=120,
    )
)
def test_update_equals_score_series_for_any_values(values: list[float]) -> None:
    ts = [1_700_000_000.0 + 60.0 * i for i in range(len(values))]
    params = {"warmup": 0, "ew_warmup": 2, "seasonal_warmup": 2, "seasonal_bins": 1440}
    streaming = detectors.create(params=params)

    one_by_one = [streaming.update(t, v) for t, v in zip(ts, values, strict=True)]
    whole = detectors.create(params=params).score_series(
        np.array(ts), np.array(values, dtype=float)
    )

    assert np.array_equal(np.array(one_by_one, dtype=float), whole)
    assert np.all((whole >= 0.0) & (whole <= 1.0))


@pytest.mark.parametrize(
    "values",
    [
        [0.0, 2.2250738585e-313, 1.0],  # a subnormal range, then a normal value
        [0.0, 1e-300, 1e300],  # an excess past the largest double
        [1e-320, 0.0, 5e-324, 1.0, 2.0],
    ],
)
def test_an_excess_too_large_for_a_double_scores_as_the_strongest_evidence(
    values: list[float],
) -> None:
    """A jump that overflows the excess (a range of a few subnormals, then a real value) is the
    strongest novelty there is: it scores like any record, within [0, 1], never NaN."""
    ts = [1_700_000_000.0 + 60.0 * i for i in range(len(values))]
    params = {"warmup": 0, "ew_warmup": 2, "seasonal_warmup": 2, "seasonal_bins": 1440}

    streaming = detectors.create(params=params)
    one_by_one = np.array([streaming.update(t, v) for t, v in zip(ts, values, strict=True)])
    whole = detectors.create(params=params).score_series(np.array(ts), np.array(values))

    assert np.array_equal(one_by_one, whole)
    assert np.all((whole >= 0.0) & (whole <= 1.0))
    assert whole.max() > 0.5  # the jump is reported


def test_scoring_in_chunks_equals_scoring_at_once() -> None:
    ts, values = _noisy_series(3000)
    chunked = detectors.create()

    parts = [
        chunked.score_series(ts[a : a + 700], values[a : a + 700]) for a in range(0, 3000, 700)
    ]

    assert np.array_equal(np.concatenate(parts), detectors.create().score_series(ts, values))


def test_a_saved_state_resumes_where_it_left_off() -> None:
    ts, values = _noisy_series(2000)
    first = detectors.create()
    first.score_series(ts[:1200], values[:1200])
    saved = json.loads(json.dumps(first.get_state()))

    resumed = detectors.create()
    resumed.set_state(saved)

    assert np.array_equal(
        resumed.score_series(ts[1200:], values[1200:]),
        detectors.create().score_series(ts, values)[1200:],
    )


def test_state_size_does_not_grow_with_points() -> None:
    ts, values = _noisy_series(60_000)
    detector = detectors.create()
    detector.score_series(ts[:1000], values[:1000])
    after_1k = _state_size(detector.get_state())

    detector.score_series(ts[1000:], values[1000:])

    assert _state_size(detector.get_state()) == after_1k


def test_params_round_trip_through_json() -> None:
    ts, values = _noisy_series(1500)
    original = detectors.create(params={"suppress_window": 30, "w_seasonal": 0.2})

    rebuilt = detectors.create(params=json.loads(json.dumps(original.params)))

    assert rebuilt.params == original.params
    assert np.array_equal(rebuilt.score_series(ts, values), original.score_series(ts, values))


def test_unknown_parameter_is_refused() -> None:
    with pytest.raises(detectors.InvalidDetectorParams, match="no_such_knob"):
        detectors.create(params={"no_such_knob": 1})


def test_out_of_range_parameter_is_refused_in_one_line_naming_it() -> None:
    with pytest.raises(detectors.InvalidDetectorParams) as refused:
        detectors.create(params={"mean_window": 0})
    assert "mean_window: Input should be greater than or equal to" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_unknown_detector_is_refused() -> None:
    with pytest.raises(detectors.UnknownDetector, match="nope"):
        detectors.create("nope")


def test_state_of_another_shape_is_refused() -> None:
    small = detectors.create(params={"mean_window": 5})

    with pytest.raises(detectors.InvalidDetectorParams):
        detectors.create().set_state(small.get_state())


def test_a_spike_scores_high_and_is_named_as_the_driver() -> None:
    ts, values = _noisy_series(2000)
    values[1500] += 60.0

    result = detectors.score_window(ts, values)

    assert result.scores[1500] >= 0.5
    assert result.score == result.scores.max()
    assert result.drivers[0] == 1500
    assert len(result.drivers) <= 5


def test_a_calm_series_names_no_driver_above_the_threshold() -> None:
    ts = np.datetime64("2024-03-01T00:00:00") + np.arange(500) * np.timedelta64(60, "s")

    result = detectors.score_window(ts, np.full(500, 3.0))

    assert result.score == 0.0
    assert result.drivers.size == 0


def test_update_accepts_datetimes_and_epoch_seconds_alike() -> None:
    import datetime as dt

    start = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    _, values = _noisy_series(400)
    by_datetime, by_seconds = detectors.create(), detectors.create()

    a = [by_datetime.update(start + dt.timedelta(minutes=5 * i), v) for i, v in enumerate(values)]
    b = [by_seconds.update(start.timestamp() + 300 * i, v) for i, v in enumerate(values)]

    assert a == b
    assert all(math.isfinite(x) for x in a)


def test_state_with_garbage_values_is_refused() -> None:
    detector = detectors.create()
    state = detector.get_state()
    state["vmax"] = "not a number"

    with pytest.raises(detectors.InvalidDetectorParams, match="vmax"):
        detector.set_state(state)


def test_state_with_a_fractional_counter_is_refused() -> None:
    detector = detectors.create()
    state = detector.get_state()
    state["n"] = 2.5

    with pytest.raises(detectors.InvalidDetectorParams, match="'n'"):
        detector.set_state(state)
