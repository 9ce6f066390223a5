"""Fast parsing of the engine's request bodies into :mod:`aegis.engine.schemas`' shapes.

Most requests carry numbers only. Validating ``tuple[float, float]`` straight from JSON is about
twice as fast as ``tuple[float | None, float | None]``, so a body is first parsed with these
number-only subclasses and only re-parsed with the documented (null-accepting) models when
that fails; errors are always those of the documented models.
"""

from __future__ import annotations

from pydantic import Field, ValidationError

from aegis.engine.schemas import (
    MAX_INCIDENTS,
    MAX_POINTS,
    MAX_SERIES,
    Incident,
    InferRequest,
    PredictRequest,
    Series,
)


class _NumericSeries(Series):
    points: list[tuple[float, float]] = Field(  # type: ignore[assignment]
        default_factory=list, max_length=MAX_POINTS
    )
    timestamps: list[float] = Field(  # type: ignore[assignment]
        default_factory=list, max_length=MAX_POINTS
    )
    values: list[float] = Field(default_factory=list, max_length=MAX_POINTS)  # type: ignore[assignment]


class _NumericIncident(Incident):
    series: list[_NumericSeries] = Field(  # type: ignore[assignment]
        default_factory=list, max_length=MAX_SERIES
    )


class _NumericPredictRequest(PredictRequest):
    incident: _NumericIncident


class _NumericInferRequest(InferRequest):
    incidents: list[_NumericIncident] | None = Field(  # type: ignore[assignment]
        None, min_length=1, max_length=MAX_INCIDENTS
    )
    incident: _NumericIncident | None = None


def _has_null_number(exc: ValidationError) -> bool:
    """Whether the number-only parse failed on a ``null`` (which the documented models accept)."""
    return any(e["type"] == "float_type" for e in exc.errors(include_url=False))


def parse_predict(body: bytes) -> PredictRequest:
    """Validate a ``/predict`` body (raises pydantic's ``ValidationError``)."""
    try:
        return _NumericPredictRequest.model_validate_json(body)
    except ValidationError as exc:
        if not _has_null_number(exc):
            raise
        return PredictRequest.model_validate_json(body)


def parse_infer(body: bytes) -> InferRequest:
    """Validate an ``/infer`` body (raises pydantic's ``ValidationError``)."""
    try:
        return _NumericInferRequest.model_validate_json(body)
    except ValidationError as exc:
        if not _has_null_number(exc):
            raise
        return InferRequest.model_validate_json(body)
