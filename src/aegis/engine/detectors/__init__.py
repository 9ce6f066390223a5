"""Streaming metric anomaly detectors.

``create(name, params)`` builds one series' detector from a JSON-serialisable params dict (the
form in which parameters ship in a signed model archive); :func:`score_window` scores one
metric window of an incident and says which points drove the score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aegis.engine.detectors.base import StreamingDetector
from aegis.engine.detectors.errors import (
    DetectorError,
    InvalidDetectorParams,
    InvalidSeries,
    UnknownDetector,
)
from aegis.engine.detectors.novelty import NoveltyDetector
from aegis.engine.detectors.window import SeriesScore, score_window

DEFAULT_DETECTOR = NoveltyDetector.name

_REGISTRY: dict[str, Callable[[dict[str, Any] | None], StreamingDetector]] = {
    NoveltyDetector.name: NoveltyDetector,
}


def available() -> list[str]:
    """The names :func:`create` accepts."""
    return sorted(_REGISTRY)


def create(name: str = DEFAULT_DETECTOR, params: dict[str, Any] | None = None) -> StreamingDetector:
    """A fresh detector for one series."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UnknownDetector(
            f"unknown detector {name!r} (available: {', '.join(available())})"
        ) from None
    return factory(params)


__all__ = [
    "DEFAULT_DETECTOR",
    "DetectorError",
    "InvalidDetectorParams",
    "InvalidSeries",
    "SeriesScore",
    "StreamingDetector",
    "UnknownDetector",
    "available",
    "create",
    "score_window",
]
