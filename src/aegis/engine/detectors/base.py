"""The contract every streaming detector meets, and input normalisation shared by all of them.

A detector sees one series, one point at a time, in arrival order, with no look-ahead, and keeps
a state whose size does not depend on how many points it has seen. ``update`` and
``score_series`` run the same per-point code, so they give bit-identical scores.

Input handling (the same for every detector):

* a value that is NaN, +/-inf or not a number scores 0.0 and leaves the state untouched;
* finite values are clipped to +/-1e100 so that no intermediate overflows;
* a timestamp may be a ``datetime`` (naive means UTC), ``numpy.datetime64``, or seconds since
  the epoch (int or float); a missing one (None, NaN, NaT) is allowed. Timestamps are only used
  for the time-of-day phase, so missing, repeated or out-of-order timestamps never fail: the point
  is still scored, the time-of-day signal just skips a point without a timestamp;
* an empty series gives an empty score array.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from aegis.engine.detectors.errors import InvalidSeries

FloatArray = npt.NDArray[np.float64]
VALUE_LIMIT = 1e100
Timestamp = dt.datetime | np.datetime64 | float | int | None


@runtime_checkable
class StreamingDetector(Protocol):
    """One series' anomaly detector: ``update`` one point, or ``score_series`` a whole series."""

    name: str

    @property
    def params(self) -> dict[str, Any]:
        """The JSON-serialisable parameters this detector was built from."""
        ...

    def update(self, timestamp: Timestamp, value: float) -> float:
        """Feed one point; its anomaly score in [0, 1]."""
        ...

    def score_series(self, timestamps: Any, values: Any) -> FloatArray:
        """Feed a whole series, in order; one score in [0, 1] per point (same as ``update``)."""
        ...

    def get_state(self) -> dict[str, Any]:
        """The detector's state as JSON-serialisable data (its size does not grow with points)."""
        ...

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state taken with :meth:`get_state` from a detector with the same params."""
        ...


def epoch_seconds(timestamp: Timestamp) -> float:  # noqa: PLR0911 (one return per accepted type)
    """Seconds since the epoch of one timestamp, NaN when it is missing or unusable."""
    if timestamp is None:
        return math.nan
    if isinstance(timestamp, dt.datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=dt.UTC)
        return timestamp.timestamp()
    if isinstance(timestamp, np.datetime64):
        if np.isnat(timestamp):
            return math.nan
        return float(timestamp.astype("datetime64[ms]").astype(np.int64)) / 1000.0
    if isinstance(timestamp, bool):
        return math.nan
    if isinstance(timestamp, int | float | np.integer | np.floating):
        seconds = float(timestamp)
        return seconds if math.isfinite(seconds) else math.nan
    return math.nan


def clean_value(value: Any) -> float:
    """The value as a float clipped to +/-1e100, NaN when it is not a finite number."""
    if isinstance(value, bool):
        return float(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    if not math.isfinite(x):
        return math.nan
    return min(max(x, -VALUE_LIMIT), VALUE_LIMIT)


def series_arrays(timestamps: Any, values: Any) -> tuple[list[float], list[float]]:
    """Normalise a series to two equal-length lists of Python floats (seconds, values).

    ``timestamps`` may be None (no timestamps at all), a ``datetime64`` array, a numeric array of
    epoch seconds, or a sequence of anything :func:`epoch_seconds` accepts.
    """
    vals = np.asarray(values)
    if vals.ndim != 1:
        raise InvalidSeries(f"values must be one-dimensional, got shape {vals.shape}")
    if vals.dtype.kind in "biuf":
        xs = vals.astype(np.float64)
        finite = np.isfinite(xs)
        xs = np.clip(xs, -VALUE_LIMIT, VALUE_LIMIT)
        xs[~finite] = np.nan
        x_list: list[float] = xs.tolist()
    else:
        x_list = [clean_value(v) for v in vals.tolist()]
    n = len(x_list)
    if timestamps is None:
        return [math.nan] * n, x_list
    t_list = _timestamps(timestamps)
    if len(t_list) != n:
        raise InvalidSeries(f"{len(t_list)} timestamps for {n} values")
    return t_list, x_list


def _timestamps(timestamps: Any) -> list[float]:
    if isinstance(timestamps, np.ndarray) and timestamps.ndim != 1:
        raise InvalidSeries(f"timestamps must be one-dimensional, got shape {timestamps.shape}")
    if isinstance(timestamps, np.ndarray) and timestamps.dtype.kind == "M":
        ms = timestamps.astype("datetime64[ms]")
        out = ms.astype(np.int64).astype(np.float64) / 1000.0
        out[np.isnat(ms)] = np.nan
        seconds: list[float] = out.tolist()
        return seconds
    if isinstance(timestamps, np.ndarray) and timestamps.dtype.kind in "iuf":
        out = timestamps.astype(np.float64)
        out[~np.isfinite(out)] = np.nan
        numeric: list[float] = out.tolist()
        return numeric
    if not isinstance(timestamps, Sequence | np.ndarray):
        raise InvalidSeries("timestamps must be a sequence")
    return [epoch_seconds(t) for t in timestamps]
