"""The ``aegis`` novelty detector run over many series at once, with numpy.

The reference detector (``aegis.engine.detectors.novelty``, owned by the detectors' authors) is
a per-point Python loop: a batch of 200 series of 240 points is 48,000 trips through it. Here
the same computation is split in two:

* the truly sequential recurrences (the two exponentially weighted means and variances, and
  the time-of-day profile) advance every series of the batch by one point per step with array
  operations, recording each point's z-scores;
* everything that only *reads* those trajectories (record-breaking excesses of the value, the
  window mean and the z-scores, the window sums, the suppression of repeated reports, the
  warm-up) is computed afterwards over whole ``(series, points)`` arrays at once.

Missing values are neither scored nor learnt by the reference, so each series is first
compacted to its valid points (scores of missing points are 0): every row then advances in step
and the per-step work does not depend on which rows have holes. Series scraped together cross
into a new time-of-day bin at the same points; in between, once every row is past its warm-up,
the bins' state is held in dense arrays (:class:`aegis.engine.lockstep_season.Held`) instead
of gathered from and scattered back to the tables at every point.

Every operation is the reference's, in the reference's order, on IEEE doubles (``np.sqrt`` and
``math.sqrt`` are correctly rounded, ``np.remainder`` is Python's ``%``, ``np.add.accumulate``
adds left to right, ``math.fsum`` is used where the reference uses it), so the scores are
bit-identical. They are also *checked* to be: :func:`kernel_matches_reference` runs a fixed
probe set through both, and the engine only uses this kernel for a detector configuration that
passed (:mod:`aegis.engine.series`). Should the reference change, the probe fails and the engine
falls back to the reference loop: slower, never different.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from aegis.engine.lockstep_season import Held, Season

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DETECTOR_NAME = "aegis"
DAY = 86400.0
# The reference's parameter names; a configuration with any other name is not run here.
KNOWN_PARAMS = frozenset(
    {
        "warmup",
        "mean_window",
        "w_value",
        "w_mean",
        "ew_fast_alpha",
        "w_ew_fast",
        "ew_slow_alpha",
        "w_ew_slow",
        "ew_warmup",
        "seasonal_bins",
        "seasonal_alpha",
        "seasonal_scale_alpha",
        "seasonal_bin_scale_alpha",
        "seasonal_global_share",
        "seasonal_min_visits",
        "seasonal_warmup",
        "w_seasonal",
        "suppress_window",
        "score_scale",
    }
)


def _compact(
    values: FloatArray, timestamps: FloatArray
) -> tuple[FloatArray, FloatArray, IntArray, IntArray, dict[int, IntArray]]:
    """Valid points of each row moved to the front, longest rows first.

    Returns the compacted values and times (NaN beyond each row's length), the original row of
    each compacted row, each compacted row's length, and the original columns of the points of
    every compacted row with a hole (a missing value before its last valid one). A row without
    one, the usual case, is already compact: its points keep their columns.
    """
    valid = values == values  # noqa: PLR0124 (NaN test)
    lengths = valid.sum(axis=1)
    order = np.argsort(-lengths, kind="stable")
    steps = int(lengths.max()) if lengths.size else 0
    leading = np.arange(values.shape[1]) < lengths[:, None]
    leading_sorted = leading[order, :steps]
    xs = np.where(leading_sorted, values[order, :steps], np.nan)
    ts = np.where(leading_sorted, timestamps[order, :steps], np.nan)
    holed: dict[int, IntArray] = {}
    for row in np.flatnonzero((valid != leading).any(axis=1)[order]).tolist():
        original = int(order[row])
        cols = np.flatnonzero(valid[original])
        xs[row, : cols.size] = values[original, cols]
        ts[row, : cols.size] = timestamps[original, cols]
        holed[row] = cols
    return xs, ts, order.astype(np.int64), lengths[order].astype(np.int64), holed


def score_lockstep(
    values: FloatArray, timestamps: FloatArray, params: dict[str, Any]
) -> FloatArray:
    """One score in [0, 1] per point of every row (0 where the value is missing)."""
    rows, steps = values.shape
    out = np.zeros((rows, steps))
    if rows == 0 or steps == 0:
        return out
    xs, ts, order, lengths, holed = _compact(values, timestamps)
    if xs.shape[1] == 0:
        return out
    with np.errstate(all="ignore"):
        z_fast, z_slow, z_season = _recurrences(xs, ts, lengths, params)
        scores = _scores(xs, lengths, z_fast=z_fast, z_slow=z_slow, z_season=z_season, p=params)
    # a compacted row's scores are 0 beyond its length, so a row without holes copies whole
    out[order, : xs.shape[1]] = scores
    for row, cols in holed.items():
        out[order[row]] = 0.0
        out[order[row], cols] = scores[row, : cols.size]
    return out


def _rates(p: dict[str, Any], steps: int) -> tuple[list[FloatArray], list[FloatArray]]:
    """Per step, the reference's adaptive rates of the fast and slow means (the point count n
    equals the step here) and what they keep, each as a ``(2, 1)`` column."""
    rates = np.array(
        [
            [1.0 / (n + 1) if n * al < 1.0 else al for n in range(steps)]
            for al in (float(p["ew_fast_alpha"]), float(p["ew_slow_alpha"]))
        ]
    )
    keeps = 1.0 - rates
    return [rates[:, i : i + 1] for i in range(steps)], [keeps[:, i : i + 1] for i in range(steps)]


def _bins(ts: FloatArray, lengths: IntArray, bins: int) -> tuple[BoolArray, IntArray, list[bool]]:
    """Which points have a time, each point's time-of-day bin as a flat index into the
    ``rows x bins`` tables, and per step whether every row still going stays in the bin of the
    step before."""
    rows, steps = ts.shape
    has_time = ts == ts  # noqa: PLR0124 (NaN test)
    k = ((np.where(has_time, ts, 0.0) % DAY) * bins / DAY).astype(np.int64)
    flat = np.minimum(k, bins - 1) + (np.arange(rows, dtype=np.int64) * bins)[:, None]
    same_bin = np.zeros(steps, dtype=np.bool_)
    if steps > 1:
        ended = lengths[:, None] <= np.arange(1, steps)[None, :]
        same_bin[1:] = ((flat[:, 1:] == flat[:, :-1]) | ended).all(axis=0)
    return has_time, flat, same_bin.tolist()


def _recurrences(
    xs: FloatArray, ts: FloatArray, lengths: IntArray, p: dict[str, Any]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The sequential part: every point's fast and slow z-scores and time-of-day z-score.

    A z-score that the reference does not compute (before ``ew_warmup``, or a time-of-day
    point not yet judged) is -1, which never breaks a record.
    """
    rows, steps = xs.shape
    z_ew = np.full((2, rows, steps), -1.0)
    z_season = np.full((rows, steps), -1.0)
    ew_warmup = int(p["ew_warmup"])
    rate_at, keep_at = _rates(p, steps)
    ends = lengths.tolist()
    mean = np.zeros((2, rows))
    var = np.zeros((2, rows))
    has_time, flat, stays = _bins(ts, lengths, int(p["seasonal_bins"]))
    all_timed = bool(has_time.all())
    season = Season(rows, int(p["seasonal_bins"]), p)
    held: Held | None = None
    active = rows
    for i in range(steps):
        while active and ends[active - 1] <= i:
            active -= 1
        x = xs[:active, i]
        if active < mean.shape[1]:
            mean, var = mean[:, :active], var[:, :active]
        if i == 0:
            mean[0] = x
            mean[1] = x
        else:
            d = x - mean
            if i >= ew_warmup:
                floor = np.abs(mean)
                floor += 1.0
                floor *= 1e-9
                z_ew[:, :active, i] = np.abs(d) / np.maximum(np.sqrt(var), floor)
            ad = rate_at[i] * d
            mean = mean + ad
            ad *= d
            ad += var
            ad *= keep_at[i]
            var = ad
        if all_timed or has_time[:active, i].all():
            if held is not None and stays[i]:
                held.step(x, z_season[:active, i])
                continue
            if held is not None:
                held.store(season)
            held = season.step(flat[:active, i], x, slice(0, active), z_season[:active, i])
            continue
        if held is not None:
            held.store(season)
            held = None
        season.step_timed(flat[:active, i], x, has_time[:active, i], z_season[:active, i])
    return z_ew[0], z_ew[1], z_season


def _prev_running(
    values: FloatArray, start: int, fn: np.ufunc, initial: float | None = None
) -> FloatArray:
    """``out[:, j]`` = ``fn`` over ``values[:, start:j]`` (``initial`` included; NaN if empty)."""
    rows, steps = values.shape
    out = np.full((rows, steps), np.nan if initial is None else initial)
    if start + 1 < steps:
        running = fn.accumulate(values[:, start : steps - 1], axis=1)
        if initial is not None:
            running = fn(running, initial)
        out[:, start + 1 :] = running
    return out


def _records(
    current: FloatArray, prev_max: FloatArray, prev_min: FloatArray, weight: float
) -> FloatArray:
    """How far ``current`` breaks the previous record, over the record span (0 if it does not)."""
    span = prev_max - prev_min
    excess = np.maximum(current - prev_max, prev_min - current)
    fired = (span > 0.0) & (excess > 0.0)
    return np.where(fired, weight * excess / span, 0.0)


def _z_records(z: FloatArray, weight: float) -> FloatArray:
    """How far a z-score beats the largest before it (which starts at 0 and must be > 0)."""
    zmax = _prev_running(z, 0, np.maximum, 0.0)
    zmax[:, 0] = 0.0
    fired = (z > zmax) & (zmax > 0.0)
    return np.where(fired, weight * (z - zmax) / zmax, 0.0)


def _window_sums(xs: FloatArray, win: int) -> FloatArray:
    """The reference's running sum of the last ``win`` values, re-summed exactly every window."""
    rows, steps = xs.shape
    blocks = -(-steps // win)
    padded = np.zeros((rows, blocks, win))
    padded.reshape(rows, blocks * win)[:, :steps] = np.where(xs == xs, xs, 0.0)  # noqa: PLR0124
    # within a block, the sum moves by each value less the one a window before it
    deltas = padded.copy()
    deltas[:, 1:] -= padded[:, :-1]
    exact = np.fromiter(
        map(math.fsum, padded.reshape(rows * blocks, win).tolist()),
        dtype=np.float64,
        count=rows * blocks,
    ).reshape(rows, blocks)
    sums = np.empty((rows, blocks, win))
    running = sums[:, :, : win - 1]
    running[...] = deltas[:, :, : win - 1]
    running[:, 1:, 0] += exact[:, :-1]  # a block starts from the exact sum of the one before
    running[:, :1, 0] += 0.0  # (as the reference's first sum starts from 0.0)
    np.add.accumulate(running, axis=2, out=running)
    sums[:, :, win - 1] = exact
    return sums.reshape(rows, blocks * win)[:, :steps]


def _previous_max(s: FloatArray, width: int) -> FloatArray:
    """``out[:, j]`` = max of ``s[:, j-width:j]``, where values before the start count as 0.

    The reference's ring of the last ``width`` scores (initially zeros). Built by doubling:
    ``span`` holds maxima over ``size`` consecutive values, and two overlapping spans cover any
    width; max is exact, so the order of comparisons does not matter.
    """
    rows, steps = s.shape
    history = np.concatenate([np.zeros((rows, width)), s[:, :-1]], axis=1)  # history[j + width]
    span, size = history, 1
    while size * 2 <= width:
        doubled = span.copy()
        doubled[:, size:] = np.maximum(span[:, size:], span[:, :-size])
        span, size = doubled, size * 2
    # span[:, t] = max(history[t - size + 1 .. t]); window for j is history[j .. j + width - 1]
    end = np.arange(steps) + width - 1
    out: FloatArray = np.maximum(span[:, end], span[:, end - (width - size)])
    return out


def _scores(
    xs: FloatArray,
    lengths: IntArray,
    *,
    z_fast: FloatArray,
    z_slow: FloatArray,
    z_season: FloatArray,
    p: dict[str, Any],
) -> FloatArray:
    steps = xs.shape[1]
    win = int(p["mean_window"])
    # value records
    e = _records(
        xs, _prev_running(xs, 0, np.maximum), _prev_running(xs, 0, np.minimum), p["w_value"]
    )
    e[:, 0] = 0.0
    # window mean records (the mean exists from the win-th point, records from the next)
    if steps > win - 1:
        means = _window_sums(xs, win) / win
        means[:, : win - 1] = np.nan
        c = _records(
            means,
            _prev_running(means, win - 1, np.maximum),
            _prev_running(means, win - 1, np.minimum),
            p["w_mean"],
        )
        c[:, :win] = 0.0
        e = np.maximum(e, c)
    e = np.maximum(e, _z_records(z_fast, p["w_ew_fast"]))
    e = np.maximum(e, _z_records(z_slow, p["w_ew_slow"]))
    e = np.maximum(e, _z_records(z_season, p["w_seasonal"]))
    s = np.where(e < np.inf, e / (1.0 + e), 1.0)  # the reference's: 1 for an overflowed excess
    s[np.arange(steps)[None, :] >= lengths[:, None]] = 0.0
    prev = _previous_max(s, int(p["suppress_window"]))
    u = s - prev
    count = np.arange(1, steps + 1)[None, :]
    quiet = (count <= p["warmup"]) | (u <= 0.0)
    return np.where(quiet, 0.0, u / (u + p["score_scale"]))


def probe_series() -> list[tuple[FloatArray, FloatArray]]:
    """A fixed, deterministic set of series that exercises every branch of the recurrence."""
    rng = np.random.default_rng(20261123)
    out: list[tuple[FloatArray, FloatArray]] = []

    def add(ts: Any, vs: Any) -> None:
        out.append((np.asarray(ts, dtype=np.float64), np.asarray(vs, dtype=np.float64)))

    for length in (0, 1, 7, 45, 160, 400, 1300):
        ts = 1.7e9 + np.arange(length) * 37.0
        base = 10.0 + rng.normal(0.0, 1.0, length)
        add(ts, base)
        if length >= 45:
            shifted = base.copy()
            shifted[length // 2 :] += 6.0
            spiky = base.copy()
            spiky[length // 3] = 80.0
            spiky[2 * length // 3] = -50.0
            holes = base.copy()
            holes[::5] = np.nan
            t_holes = ts.copy()
            t_holes[::3] = np.nan
            add(ts, shifted)
            add(ts, spiky)
            add(t_holes, holes)
            add(np.full(length, np.nan), base)
            add(ts, np.full(length, 3.0))
            add(ts[::-1], np.cumsum(np.abs(base)))
    daily = 1.7e9 + np.arange(2000) * 300.0
    wave = 50 + 10 * np.sin(2 * np.pi * daily / DAY) + rng.normal(0, 0.5, 2000)
    wave[1700] += 15.0
    add(daily, wave)
    add(daily, np.where(np.arange(2000) % 2 == 0, 1e100, -1e100))
    return out


def pad(series: list[tuple[FloatArray, FloatArray]]) -> tuple[FloatArray, FloatArray]:
    """Stack series of different lengths into two NaN-padded ``(rows, steps)`` arrays."""
    steps = max((len(v) for _, v in series), default=0)
    values = np.full((len(series), steps), np.nan)
    times = np.full((len(series), steps), np.nan)
    for row, (ts, vs) in enumerate(series):
        values[row, : len(vs)] = vs
        times[row, : len(ts)] = ts
    return values, times


def kernel_matches_reference(
    params: dict[str, Any],
    reference: Any,
    series: list[tuple[FloatArray, FloatArray]] | None = None,
) -> bool:
    """Whether this kernel gives exactly ``reference(timestamps, values)``'s scores on a probe set.

    ``reference`` scores one series (the detectors package's ``score_series`` of a fresh
    detector); the engine passes it in, so this module does not depend on the reference.
    """
    if set(params) != KNOWN_PARAMS:
        return False
    probe = probe_series() if series is None else series
    values, times = pad(probe)
    try:
        got = score_lockstep(values, times, params)
    except (ValueError, TypeError, KeyError, IndexError, FloatingPointError):
        return False
    for row, (ts, vs) in enumerate(probe):
        expected = np.asarray(reference(ts, vs), dtype=np.float64)
        if expected.shape != (len(vs),) or not np.array_equal(got[row, : len(vs)], expected):
            return False
    return True
