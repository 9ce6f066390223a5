"""Score one metric window of an incident: per-point scores and the points that drove them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from aegis.engine.detectors.base import FloatArray

DRIVER_THRESHOLD = 0.5


@dataclass(frozen=True)
class SeriesScore:
    """The outcome of scoring one series.

    ``score`` is the highest point score; ``drivers`` are the indices of the points that drove it:
    the (at most ``max_drivers``) highest-scoring points at or above the driver threshold, best
    first, or the single best point when none reaches it (empty when every score is 0).
    """

    scores: FloatArray
    score: float
    drivers: npt.NDArray[np.int64]


def score_window(
    timestamps: Any,
    values: Any,
    *,
    detector: str | None = None,
    params: dict[str, Any] | None = None,
    threshold: float = DRIVER_THRESHOLD,
    max_drivers: int = 5,
) -> SeriesScore:
    """Score one series with a fresh detector (default: the ``aegis`` detector)."""
    from aegis.engine.detectors import DEFAULT_DETECTOR, create

    scores = create(detector or DEFAULT_DETECTOR, params).score_series(timestamps, values)
    if scores.size == 0:
        return SeriesScore(scores, 0.0, np.zeros(0, dtype=np.int64))
    order = np.argsort(-scores, kind="stable")
    above = order[scores[order] >= threshold][: max(max_drivers, 0)]
    if above.size == 0 and scores[order[0]] > 0.0:
        above = order[:1]
    return SeriesScore(scores, float(scores[order[0]]), above.astype(np.int64))
