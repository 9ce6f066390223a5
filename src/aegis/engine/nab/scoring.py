"""The NAB v1.1 scoring rules, implemented independently of NAB's code.

One file is prepared once (:func:`prepare_file`): each scorable point (after the probationary
period) gets the unweighted score it would earn as a detection, and the window it lies in. A
profile then weighs those, and :func:`optimise` sweeps the detection threshold over every distinct
anomaly score of the corpus to find the one that maximises the corpus total, as NAB does:

* probation: the first ``min(floor(0.15 n), 0.15 * 5000)`` points are ignored;
* ``sigma(y) = 2 / (1 + exp(5 y)) - 1``, and ``-1`` for ``y > 3``;
* a detection inside a window of ``w`` points ending at index ``r`` earns
  ``A_TP * sigma(-(r - i + 1) / w) / sigma(-1)``; only the best detection of a window counts;
* a detection outside windows costs ``A_FP`` before the first window, else
  ``A_FP * sigma(|i - r| / (w - 1))`` after the last window (end ``r``, width ``w``) it follows;
* a window with no detection costs ``A_FN``;
* normalised score ``100 * (raw - null) / (perfect - null)``, null ``= -A_FN * windows``,
  perfect ``= A_TP * windows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PROBATION_PERCENT = 0.15
NO_DETECTION_THRESHOLD = 1.1  # NAB's threshold for "nothing detected"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Profile:
    """A NAB application profile: the weights of true positives, false positives, misses."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


@dataclass(frozen=True)
class PreparedFile:
    """The scorable points of one file (probation removed) and what a detection there earns."""

    key: str
    scores: FloatArray  # anomaly scores of the scorable points
    unweighted: FloatArray  # sigma-based score of a detection at each scorable point
    window: IntArray  # window index (0..n_windows-1) of each scorable point, -1 outside
    n_windows: int


@dataclass(frozen=True)
class ProfileResult:
    """The outcome of one profile over a corpus at its best threshold."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int

    @property
    def normalised(self) -> float:
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span > 0 else 0.0


def scaled_sigmoid(y: FloatArray) -> FloatArray:
    """NAB's ``sigma``: ``2 / (1 + e^(5y)) - 1``, and ``-1`` beyond ``y = 3``."""
    with np.errstate(over="ignore"):
        out = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, out)


def probation_length(n: int, percent: float = PROBATION_PERCENT) -> float:
    return min(math.floor(percent * n), percent * 5000)


def prepare_file(
    key: str,
    timestamps: npt.NDArray[np.datetime64],
    scores: FloatArray,
    windows: Sequence[tuple[np.datetime64, np.datetime64]],
    *,
    probation_percent: float = PROBATION_PERCENT,
) -> PreparedFile:
    """Work out, for every point of one file, what a detection there would earn."""
    n = len(timestamps)
    if len(scores) != n:
        raise ValueError(f"{key}: {len(scores)} scores for {n} timestamps")
    unweighted = np.full(n, -1.0)  # before the first window: a plain false positive
    window = np.full(n, -1, dtype=np.int64)
    idx = np.arange(n, dtype=np.float64)
    sigma_m1 = float(scaled_sigmoid(np.array([-1.0]))[0])
    spans: list[tuple[int, int]] = []
    for w, (start, end) in enumerate(sorted(windows)):
        inside = np.flatnonzero((timestamps >= start) & (timestamps <= end) & (window < 0))
        if inside.size == 0:
            continue  # a window with no point in the file can only be missed
        left, right = int(inside[0]), int(inside[-1])
        width = right - left + 1
        span = slice(left, right + 1)
        unweighted[span] = scaled_sigmoid(-(right - idx[span] + 1.0) / width) / sigma_m1
        window[span] = w
        spans.append((left, right))
    for k, (left, right) in enumerate(spans):
        upto = spans[k + 1][0] if k + 1 < len(spans) else n
        after = slice(right + 1, upto)
        width = right - left + 1
        if width > 1:
            unweighted[after] = scaled_sigmoid(np.abs(idx[after] - right) / float(width - 1))
        else:
            unweighted[after] = -1.0
    start_at = math.ceil(probation_length(n, probation_percent))
    return PreparedFile(
        key=key,
        scores=np.asarray(scores, dtype=np.float64)[start_at:],
        unweighted=unweighted[start_at:],
        window=window[start_at:],
        n_windows=len(windows),
    )


@dataclass(frozen=True)
class FileScore:
    """One file's share of a profile's score at a given threshold."""

    key: str
    raw: float
    windows: int
    tp: int
    fp: int
    fn: int


def score_file(prepared: PreparedFile, profile: Profile, threshold: float) -> FileScore:
    """Score one prepared file at a fixed threshold (a point detects when its score >= it)."""
    detected = prepared.scores >= threshold  # NaN never detects
    inside = prepared.window >= 0
    false_pos = detected & ~inside
    raw = float(np.sum(profile.fp * prepared.unweighted[false_pos]))
    tp = 0
    for w in range(prepared.n_windows):
        hits = detected & (prepared.window == w)
        if hits.any():
            raw += profile.tp * float(prepared.unweighted[hits].max())
            tp += 1
        else:
            raw -= profile.fn
    return FileScore(
        key=prepared.key,
        raw=raw,
        windows=prepared.n_windows,
        tp=tp,
        fp=int(false_pos.sum()),
        fn=prepared.n_windows - tp,
    )


def optimise(files: Sequence[PreparedFile], profile: Profile) -> ProfileResult:
    """Find the corpus-wide threshold that maximises the profile's total, as NAB's optimiser does.

    Every distinct anomaly score is a candidate (plus "no detection at all"); on ties the highest
    threshold wins, as in NAB (the first maximum met while sweeping down).
    """
    thresholds, totals, tps, fps = _sweep(files, profile)
    best = int(np.argmax(totals))
    n_windows = sum(f.n_windows for f in files)
    return ProfileResult(
        profile=profile.name,
        threshold=float(thresholds[best]),
        raw=float(totals[best]),
        null=-profile.fn * n_windows,
        perfect=profile.tp * n_windows,
        tp=int(tps[best]),
        fp=int(fps[best]),
        fn=n_windows - int(tps[best]),
    )


def _sweep(
    files: Sequence[PreparedFile], profile: Profile
) -> tuple[FloatArray, FloatArray, IntArray, IntArray]:
    """Corpus total, true and false positive counts at every candidate threshold (descending)."""
    n_windows = sum(f.n_windows for f in files)
    offsets = np.cumsum([0] + [f.n_windows for f in files[:-1]], dtype=np.int64)
    scores = np.concatenate([f.scores for f in files]) if files else np.zeros(0)
    unweighted = np.concatenate([f.unweighted for f in files]) if files else np.zeros(0)
    window = (
        np.concatenate(
            [np.where(f.window >= 0, f.window + o, -1) for f, o in zip(files, offsets, strict=True)]
        )
        if files
        else np.zeros(0, dtype=np.int64)
    )
    keep = ~np.isnan(scores)
    scores, unweighted, window = scores[keep], unweighted[keep], window[keep]
    order = np.argsort(-scores, kind="stable")
    scores, unweighted, window = scores[order], unweighted[order], window[order]
    inside = window >= 0

    delta = np.where(inside, 0.0, profile.fp * unweighted)
    new_tp = np.zeros(scores.size, dtype=np.int64)
    positions = np.flatnonzero(inside)
    by_window = positions[np.argsort(window[positions], kind="stable")]
    bounds = np.flatnonzero(np.diff(window[by_window])) + 1
    for group in np.split(by_window, bounds):
        if group.size == 0:
            continue
        best = np.maximum.accumulate(profile.tp * unweighted[group])
        previous = np.concatenate(([-profile.fn], best[:-1]))
        delta[group] = best - previous
        new_tp[group[0]] = 1

    ends = np.flatnonzero(np.diff(scores) != 0)
    ends = np.append(ends, scores.size - 1) if scores.size else ends
    totals = np.cumsum(delta)[ends] - profile.fn * n_windows
    tps = np.cumsum(new_tp)[ends]
    fps = np.cumsum(~inside)[ends]
    return (
        np.concatenate(([NO_DETECTION_THRESHOLD], scores[ends])),
        np.concatenate(([-profile.fn * n_windows], totals)),
        np.concatenate(([0], tps)).astype(np.int64),
        np.concatenate(([0], fps)).astype(np.int64),
    )
