"""Metric series of a batch of incidents: cleaning, anomaly scores, drivers and summary figures.

Every series of a batch becomes one row of ``(rows, points)`` arrays, so cleaning, figures and
driver selection are a few array operations for the whole batch, and each row's results depend
only on that row (prefix sums and maxima, never reductions whose rounding could depend on the
batch's width): a series scores the same alone or in any batch.

Scores come from the detectors package (``aegis.engine.detectors``): its public
:func:`~aegis.engine.detectors.score_window` scores one series with a fresh detector. Series of
similar length are scored together by :mod:`aegis.engine.lockstep` (the same detector as array
operations) when the model's detector configuration passed the kernel's exactness probe at load
(:func:`kernel_supported`); otherwise, and for groups too small to pay for the per-step
overhead, each series goes through ``score_window``. Either way the scores are the same numbers.

Cleaning (documented in ``aegis.engine.schemas``): values that are missing or not finite become
NaN (not scored, not learnt); finite values are clipped to +/-1e100; points are put in
timestamp order with a stable sort in which a point without a timestamp keeps its place after
its predecessor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from aegis.engine import detectors, lockstep
from aegis.engine.knowledge import KnowledgeBase
from aegis.engine.schemas import Series

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
VALUE_LIMIT = 1e100
CHANGE_LIMIT = 1e6
# Lockstep pays for itself from about this many series of similar length (bench/inference_batching).
LOCKSTEP_MIN_ROWS = 12
LOCKSTEP_MIN_FILL = 0.5  # a group's shortest series is at least this fraction of its longest


@dataclass(frozen=True)
class SeriesBatch:
    """Every series of a batch, one row each, in time order; NaN where missing or padding."""

    names: list[str]
    families: list[str]
    values: FloatArray
    times: FloatArray
    lengths: IntArray
    orders: list[IntArray | None]  # request position of each time-ordered point (None: same)
    missing: IntArray

    @property
    def rows(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Figures:
    """Per row: what the symptoms are computed from (NaN where not defined)."""

    score: FloatArray
    recent_score: FloatArray
    change: FloatArray  # recent mean relative to baseline mean
    growth: FloatArray  # mean of the last tenth relative to the first tenth
    rising_quarters: IntArray  # how many of the 3 quarter-to-quarter steps went up
    increase: FloatArray  # last valid value minus first valid value


def family_patterns(kb: KnowledgeBase) -> list[tuple[str, re.Pattern[str]]]:
    return [(fp.family, re.compile(fp.pattern, re.IGNORECASE)) for fp in kb.metric_families]


def family_of(series: Series, patterns: Sequence[tuple[str, re.Pattern[str]]]) -> str:
    if series.family is not None:
        return series.family
    for family, pattern in patterns:
        if pattern.search(series.name):
            return family
    return "other"


def _forward_fill(times: FloatArray) -> FloatArray:
    """Missing timestamps take their predecessor's (leading ones: -inf): a stable sort key."""
    idx = np.where(np.isnan(times), 0, np.arange(times.shape[-1]))
    np.maximum.accumulate(idx, axis=-1, out=idx)
    filled = np.take_along_axis(times, idx, axis=-1)
    filled[np.isnan(filled)] = -np.inf
    return filled


def _columns(series: Series) -> tuple[FloatArray, FloatArray]:
    """The series' timestamps and values as float arrays (None becomes NaN)."""
    if series.columnar:
        return (
            np.array(series.timestamps, dtype=np.float64),
            np.array(series.values, dtype=np.float64),
        )
    points = series.points
    try:  # numbers only (the common case): about twice as fast as np.array
        flat = np.fromiter(chain.from_iterable(points), dtype=np.float64, count=2 * len(points))
    except TypeError:
        flat = np.array(points, dtype=np.float64).reshape(-1)
    pairs = flat.reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def build(series: Sequence[Series], patterns: Sequence[tuple[str, re.Pattern[str]]]) -> SeriesBatch:
    """Clean and stack ``series`` (from any number of incidents) into one batch."""
    raws = [_columns(s) for s in series]
    lengths = np.array([len(v) for _, v in raws], dtype=np.int64)
    steps = int(lengths.max()) if raws else 0
    times = np.full((len(raws), steps), np.nan)
    values = np.full((len(raws), steps), np.nan)
    for row, (t, v) in enumerate(raws):
        times[row, : len(t)] = t
        values[row, : len(v)] = v
    inside = np.arange(steps)[None, :] < lengths[:, None]
    times[~np.isfinite(times)] = np.nan
    bad = ~np.isfinite(values)
    missing = (bad & inside).sum(axis=1).astype(np.int64)
    np.clip(values, -VALUE_LIMIT, VALUE_LIMIT, out=values)
    values[bad] = np.nan
    orders: list[IntArray | None] = [None] * len(raws)
    if steps > 1:
        key = _forward_fill(times)
        backwards = np.any((key[:, 1:] < key[:, :-1]) & inside[:, 1:], axis=1)
        for row in np.flatnonzero(backwards).tolist():
            n = int(lengths[row])
            order = np.argsort(key[row, :n], kind="stable").astype(np.int64)
            times[row, :n], values[row, :n] = times[row, order], values[row, order]
            orders[row] = order
    return SeriesBatch(
        names=[s.name for s in series],
        families=[family_of(s, patterns) for s in series],
        values=values,
        times=times,
        lengths=lengths,
        orders=orders,
        missing=missing,
    )


def kernel_supported(name: str, params: dict[str, Any]) -> bool:
    """Whether the lockstep kernel reproduces this detector configuration exactly.

    The answer is remembered per configuration for the life of the process (the reference
    detector's code does not change while it runs).
    """
    if name != lockstep.DETECTOR_NAME:
        return False
    resolved = detectors.create(name, params).params
    key = json.dumps(resolved, sort_keys=True)
    if key not in _KERNEL_CHECKED:

        def reference(ts: FloatArray, vs: FloatArray) -> FloatArray:
            return detectors.create(name, resolved).score_series(ts, vs)

        _KERNEL_CHECKED[key] = lockstep.kernel_matches_reference(resolved, reference)
    return _KERNEL_CHECKED[key]


_KERNEL_CHECKED: dict[str, bool] = {}


def runs(lengths: Sequence[int]) -> list[list[int]]:
    """Rows in runs of similar length, longest first: every row of a run is at least
    ``LOCKSTEP_MIN_FILL`` of the run's longest (rows of no points make one run). A run stacked
    into one array is padded to at most twice its points, so a batch's arrays grow with the
    points it holds, never with its number of series times its longest one."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    start = 0
    while start < len(order):
        longest = lengths[order[start]]
        end = start
        while end < len(order) and lengths[order[end]] >= LOCKSTEP_MIN_FILL * longest:
            end += 1
        out.append(order[start:end])
        start = max(end, start + 1)
    return out


def _groups(lengths: list[int]) -> tuple[list[list[int]], list[int]]:
    """Split rows into lockstep groups of similar length, and the rest (scored one by one)."""
    groups: list[list[int]] = []
    single: list[int] = []
    for members in runs(lengths):
        if lengths[members[0]] > 0 and len(members) >= LOCKSTEP_MIN_ROWS:
            groups.append(members)
        else:
            single.extend(members)
    return groups, single


def score(batch: SeriesBatch, *, name: str, params: dict[str, Any], use_kernel: bool) -> FloatArray:
    """Every point's anomaly score, ``(rows, points)`` (0 beyond a row's length)."""
    scores = np.zeros(batch.values.shape)
    lengths = batch.lengths.tolist()
    groups, single = _groups(lengths) if use_kernel else ([], list(range(batch.rows)))
    for members in groups:
        width = max(lengths[i] for i in members)
        scores[members, :width] = lockstep.score_lockstep(
            batch.values[members, :width], batch.times[members, :width], params
        )
    for row in single:
        n = lengths[row]
        if n:
            result = detectors.score_window(
                batch.times[row, :n], batch.values[row, :n], detector=name, params=params
            )
            scores[row, :n] = result.scores
    return scores


def drivers(scores: FloatArray, lengths: IntArray, threshold: float, limit: int) -> list[IntArray]:
    """Per row, the points that drove the score, best first, as ``detectors.score_window`` picks
    them: the (at most ``limit``) highest at or above ``threshold``, else the single best when it
    is above 0."""
    if scores.size == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(scores.shape[0])]
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(limit, 1)]
    top = np.take_along_axis(scores, order, axis=1)
    out = []
    for row in range(scores.shape[0]):
        keep = order[row][top[row] >= threshold][:limit]
        if keep.size == 0 and lengths[row] and top[row, 0] > 0.0:
            keep = order[row][:1]
        out.append(keep.astype(np.int64))
    return out


def recent_starts(batch: SeriesBatch, boundaries: FloatArray, fraction: float) -> IntArray:
    """Per row, where the recent part begins: at the row's boundary time (NaN: none) when that
    leaves at least 3 points before it and 1 after, else the last ``fraction`` of the points."""
    n = batch.lengths
    fallback = np.minimum(np.maximum((n * (1.0 - fraction)).astype(np.int64), 1), n)
    if batch.values.shape[1] == 0:
        return fallback
    key = _forward_fill(batch.times)
    inside = np.arange(key.shape[1])[None, :] < n[:, None]
    at = ((key < boundaries[:, None]) & inside).sum(axis=1)
    usable = ~np.isnan(boundaries) & np.any(~np.isnan(batch.times) & inside, axis=1)
    usable &= (at >= 3) & (at < n)
    return np.where(usable, at, fallback).astype(np.int64)


def _prefix(cum: FloatArray, counts: IntArray, k: IntArray) -> FloatArray:
    """Sum of the first ``k`` valid values of each row (0 when ``k`` is 0)."""
    at = (counts < k[:, None]).sum(axis=1)
    at = np.minimum(at, cum.shape[1] - 1)
    got = np.take_along_axis(cum, at[:, None], axis=1)[:, 0]
    return np.where(k > 0, got, 0.0)


def figures(batch: SeriesBatch, scores: FloatArray, starts: IntArray) -> Figures:
    values, n = batch.values, batch.lengths
    rows, steps = values.shape
    if steps == 0:
        nan = np.full(rows, np.nan)
        return Figures(np.zeros(rows), np.zeros(rows), nan, nan, np.zeros(rows, np.int64), nan)
    idx = np.arange(steps)[None, :]
    valid = ~np.isnan(values)
    with np.errstate(all="ignore"):
        cum = np.cumsum(np.where(valid, values, 0.0), axis=1)
        counts = np.cumsum(valid, axis=1)
        score_all = np.max(scores, axis=1)
        recent = np.max(np.where(idx >= starts[:, None], scores, 0.0), axis=1)
        total_n = counts[:, -1]
        base_n = np.where(starts > 0, np.take_along_axis(counts, (starts - 1)[:, None], 1)[:, 0], 0)
        base_sum = _prefix(cum, counts, base_n)
        total = _prefix(cum, counts, total_n)
        recent_n = total_n - base_n
        b_mean, r_mean = base_sum / base_n, (total - base_sum) / recent_n
        change = (r_mean - b_mean) / np.maximum(np.abs(b_mean), 1e-9)
        change = np.where((base_n > 0) & (recent_n > 0), change, np.nan)
        tenth = np.maximum(total_n // 10, 1)
        first = _prefix(cum, counts, tenth) / tenth
        last = (total - _prefix(cum, counts, total_n - tenth)) / tenth
        growth = np.where(total_n >= 8, (last - first) / np.maximum(np.abs(first), 1e-9), np.nan)
        sizes = [total_n // 4 + (q < total_n % 4) for q in range(4)]
        edges = np.cumsum(np.stack([np.zeros(rows, np.int64), *sizes]), axis=0)
        sums = [
            _prefix(cum, counts, edges[q + 1]) - _prefix(cum, counts, edges[q]) for q in range(4)
        ]
        means = [s / np.maximum(size, 1) for s, size in zip(sums, sizes, strict=True)]
        rising = sum((means[q + 1] > means[q]).astype(np.int64) for q in range(3))
        rising = np.where(total_n >= 8, rising, 0)
        first_at = np.argmax(valid, axis=1)
        last_at = steps - 1 - np.argmax(valid[:, ::-1], axis=1)
        ends = np.take_along_axis(values, np.stack([first_at, last_at], axis=1), axis=1)
        increase = np.where(total_n >= 2, ends[:, 1] - ends[:, 0], 0.0)
    limit = (-CHANGE_LIMIT, CHANGE_LIMIT)
    return Figures(
        score=score_all,
        recent_score=np.where(n > 0, recent, 0.0),
        change=np.clip(change, *limit),
        growth=np.clip(growth, *limit),
        rising_quarters=rising.astype(np.int64),
        increase=increase,
    )
