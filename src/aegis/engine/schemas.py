"""The engine's wire shapes: an incident in, a prediction out (``docs/engine.md`` documents them).

Bad input is handled as documented here, never by crashing:

* a point's value or timestamp may be ``null``, ``NaN`` or ``Infinity`` (JSON extensions that
  Prometheus clients emit), or a numeric string (``"1.5"``, ``"NaN"``, as Prometheus's API sends
  values): a non-finite or missing value is *missing* (not scored, not learnt); a non-finite or
  missing timestamp is missing (the point keeps its place among its neighbours);
* out-of-order points are scored in timestamp order (the response says ``reordered``);
* an empty series scores 0 with no drivers;
* text must be valid Unicode JSON. A log shipper holding bytes that are not UTF-8 either
  decodes them with replacement characters (U+FFFD, mined like any other character) or sends
  ``{"message_b64": "..."}``, which the engine decodes with replacement. Lone surrogate escapes
  (``"\\ud800"``) are invalid JSON and answered 422;
* sizes are bounded (:data:`LIMITS`); more is a 422 naming the field. The body as a whole is
  bounded by ``MAX_BODY_BYTES`` (413) before any of this runs.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from aegis.engine.knowledge import ActionName, Family

MAX_SERIES = 64
MAX_POINTS = 20_000
MAX_INCIDENT_POINTS = 200_000
MAX_LOG_LINES = 20_000
MAX_LINE_CHARS = 65_536
MAX_CHANGES = 64
MAX_INCIDENTS = 256
MAX_OUTCOME_STATS = 10_000
LIMITS = {
    "series per incident": MAX_SERIES,
    "points per series": MAX_POINTS,
    "points per incident": MAX_INCIDENT_POINTS,
    "log lines per incident": MAX_LOG_LINES,
    "characters per log line": MAX_LINE_CHARS,
    "changes per incident": MAX_CHANGES,
    "incidents per /infer request": MAX_INCIDENTS,
    "outcome statistics per request": MAX_OUTCOME_STATS,
}

Label = str
LineText = Annotated[str, StringConstraints(max_length=MAX_LINE_CHARS)]
TimeValue = float | datetime | None


def epoch_seconds(value: TimeValue) -> float | None:
    """Seconds since the epoch, None when missing or not finite (naive datetimes are UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    seconds = float(value)
    return seconds if math.isfinite(seconds) else None


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Alert(BaseModel):
    """An Alertmanager alert (extra Alertmanager fields are accepted and ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    labels: dict[Label, Label] = Field(default_factory=dict, max_length=256)
    annotations: dict[Label, Label] = Field(default_factory=dict, max_length=256)
    starts_at: TimeValue = Field(None, validation_alias=AliasChoices("starts_at", "startsAt"))
    status: str | None = Field(None, max_length=32)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


class Series(_In):
    """One metric series, epoch seconds: ``points`` (``[timestamp, value]`` pairs, as Prometheus
    sends them) or the same points as two columns, ``timestamps`` and ``values`` (the columnar
    form: cheaper to parse and to hold, since no pair becomes an object of its own)."""

    name: str = Field(min_length=1, max_length=512)
    family: Family | None = Field(
        None, description="memory, cpu, latency, load, errors, restarts, other; default: by name"
    )
    labels: dict[Label, Label] = Field(default_factory=dict, max_length=64)
    points: list[tuple[float | None, float | None]] = Field(
        default_factory=list, max_length=MAX_POINTS
    )
    timestamps: list[float | None] = Field(default_factory=list, max_length=MAX_POINTS)
    values: list[float | None] = Field(default_factory=list, max_length=MAX_POINTS)

    @model_validator(mode="after")
    def _one_form(self) -> Series:
        if not self.columnar:
            return self
        if "points" in self.model_fields_set:
            raise ValueError("send points, or timestamps and values, not both")
        if len(self.timestamps) != len(self.values):
            raise ValueError(
                f"timestamps and values differ in length "
                f"({len(self.timestamps)} and {len(self.values)})"
            )
        return self

    @property
    def columnar(self) -> bool:
        """Whether the points came as ``timestamps`` and ``values``."""
        return "values" in self.model_fields_set or "timestamps" in self.model_fields_set

    @property
    def length(self) -> int:
        return len(self.values) if self.columnar else len(self.points)

    def point_times(self) -> list[float | None]:
        """Every point's timestamp, in request order."""
        return self.timestamps if self.columnar else [t for t, _ in self.points]


class LogLine(_In):
    """A log line with its time."""

    message: str = Field(max_length=MAX_LINE_CHARS)
    timestamp: TimeValue = None


_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class EncodedLogLine(_In):
    """A log line whose bytes are not UTF-8: base64, decoded with replacement characters."""

    message_b64: Base64Bytes = Field(max_length=MAX_LINE_CHARS)
    timestamp: TimeValue = None

    @field_validator("message_b64", mode="before")
    @classmethod
    def _strict_base64(cls, value: object) -> object:
        if isinstance(value, str) and not _BASE64.fullmatch(value):
            raise ValueError("not standard base64 (A-Z a-z 0-9 + / with = padding)")
        return value

    @property
    def message(self) -> str:
        return self.message_b64.decode("utf-8", errors="replace")


# The three forms never match the same input (a string; objects with different required keys
# and no extra ones), so trying them in order gives the same result as pydantic's "smart" union,
# a third cheaper.
LogItem = Annotated[LineText | LogLine | EncodedLogLine, Field(union_mode="left_to_right")]


class Change(_In):
    """A recent change to the workload (the backend knows its rollout history)."""

    kind: Literal["deploy", "config", "scale", "rollback"] = "deploy"
    at: TimeValue = None
    from_version: str | None = Field(None, max_length=256)
    to_version: str | None = Field(None, max_length=256)
    from_revision: int | None = Field(None, ge=1)
    to_revision: int | None = Field(None, ge=1)


class Incident(_In):
    """An alert plus the recent metric series and log lines of the affected workload."""

    id: str | None = Field(None, max_length=256)
    alert: Alert = Field(default_factory=Alert)
    series: list[Series] = Field(default_factory=list, max_length=MAX_SERIES)
    logs: list[LogItem] = Field(default_factory=list, max_length=MAX_LOG_LINES)
    changes: list[Change] = Field(default_factory=list, max_length=MAX_CHANGES)
    replicas: int | None = Field(None, ge=0, le=100_000, description="current replica count")

    @model_validator(mode="after")
    def _sizes(self) -> Incident:
        points = sum(s.length for s in self.series)
        if points > MAX_INCIDENT_POINTS:
            raise ValueError(f"series: {points} points in all, at most {MAX_INCIDENT_POINTS}")
        return self


class OutcomeStat(_In):
    """Past outcomes of one action for one kind of incident (kept by the backend)."""

    incident_kind: str = Field(min_length=1, max_length=64)
    action: ActionName
    successes: int = Field(0, ge=0, le=10**9)
    failures: int = Field(0, ge=0, le=10**9)


class PredictRequest(_In):
    """``POST /predict``: one incident."""

    incident: Incident
    outcome_stats: list[OutcomeStat] = Field(default_factory=list, max_length=MAX_OUTCOME_STATS)


class InferRequest(_In):
    """``POST /infer``: ``incidents`` (a list) or ``incident`` (one)."""

    incidents: list[Incident] | None = Field(None, min_length=1, max_length=MAX_INCIDENTS)
    incident: Incident | None = None
    outcome_stats: list[OutcomeStat] = Field(default_factory=list, max_length=MAX_OUTCOME_STATS)

    @model_validator(mode="after")
    def _one_form(self) -> InferRequest:
        if (self.incidents is None) == (self.incident is None):
            raise ValueError("send exactly one of incidents (a list) and incident")
        return self

    @property
    def items(self) -> list[Incident]:
        return list(self.incidents) if self.incidents is not None else [self.incident]  # type: ignore[list-item]


def stats_dict(stats: list[OutcomeStat]) -> dict[tuple[str, str], dict[str, int]]:
    """The recommender's ``outcome_stats`` form (duplicates add up)."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for s in stats:
        entry = out.setdefault((s.incident_kind, s.action), {"successes": 0, "failures": 0})
        entry["successes"] += s.successes
        entry["failures"] += s.failures
    return out


# --- out ---------------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class DriverPoint(_Out):
    index: int = Field(description="position in the series as sent")
    timestamp: float | None
    value: float
    score: float


class SeriesResult(_Out):
    name: str
    family: Family
    score: float = Field(description="highest point score in [0, 1]")
    recent_score: float = Field(description="highest point score in the recent part")
    change: float | None = Field(description="recent mean over baseline mean, minus 1")
    points: int
    missing_points: int
    reordered: bool
    drivers: list[DriverPoint]


class LogEvidence(_Out):
    template: str
    kind: Literal["new", "surging", "signature"]
    recent_count: int
    baseline_count: int
    ratio: float | None
    example: str
    signatures: list[str]
    strength: float


class LogSummary(_Out):
    lines: int
    lines_used: int
    templates: int
    score: float
    evidence: list[LogEvidence]
    truncated: bool = Field(False, description="mining stopped at its work budget")


class SymptomRead(_Out):
    name: str
    strength: float
    evidence: list[str]


class SeverityRead(_Out):
    level: Literal["critical", "warning", "info"]
    score: float
    reasons: list[str]


class Target(_Out):
    namespace: str | None
    name: str | None


class Recommendation(_Out):
    action: ActionName
    params: dict[str, int]
    target: Target
    confidence: float = Field(ge=0.0, le=1.0)
    explanation: str
    incident_kind: str = Field(description="the kind to record this action's outcome under")
    rule: str | None
    prior: float
    successes: int
    failures: int


class ModelRef(_Out):
    name: str
    version: str
    digest: str


class IncidentPrediction(_Out):
    incident_id: str | None
    incident_kind: str
    severity: SeverityRead
    series: list[SeriesResult]
    logs: LogSummary
    symptoms: list[SymptomRead]
    recommendations: list[Recommendation]
    model: ModelRef


class ItemError(_Out):
    code: str
    message: str


class InferItem(_Out):
    ok: bool
    prediction: IncidentPrediction | None = None
    error: ItemError | None = None


class InferResponse(_Out):
    predictions: list[InferItem]
    model: ModelRef | None
