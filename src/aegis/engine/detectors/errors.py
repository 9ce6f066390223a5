"""Errors of the streaming detectors."""

from __future__ import annotations

from aegis.core.errors import AegisError


class DetectorError(AegisError):
    """The root of the detectors' errors."""

    code = "detector_error"
    status_code = 400


class UnknownDetector(DetectorError):
    code = "unknown_detector"


class InvalidDetectorParams(DetectorError):
    code = "invalid_detector_params"


class InvalidSeries(DetectorError):
    """The input series cannot be scored (lengths differ, values not numeric...)."""

    code = "invalid_series"
