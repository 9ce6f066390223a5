"""Alertmanager's webhook payload (version 4) and Aegis's incident shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from aegis.core.types import MAX_DB_INT, StoredText


def _in_utc(value: datetime | None) -> datetime | None:
    """``value`` as UTC (a time without an offset is taken to be UTC). Alertmanager writes times
    with its host's offset, and SQLite keeps a time's digits but not its offset: stored as sent,
    12:00+02:00 would be read back as 12:00 UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("a time outside the years 1 to 9999 once in UTC") from None


AlertTime = Annotated[datetime | None, AfterValidator(_in_utc)]


class WebhookAlert(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[StoredText, StoredText] = Field(max_length=64)
    annotations: dict[StoredText, StoredText] = Field(default_factory=dict, max_length=64)
    starts_at: AlertTime = Field(None, alias="startsAt")
    ends_at: AlertTime = Field(None, alias="endsAt")
    generator_url: StoredText = Field("", alias="generatorURL", max_length=2048)
    fingerprint: StoredText = Field(min_length=1, max_length=64)


class WebhookPayload(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    version: StoredText = "4"
    group_key: StoredText = Field("", alias="groupKey", max_length=4096)
    status: Literal["firing", "resolved"]
    receiver: StoredText = Field("", max_length=256)
    alerts: list[WebhookAlert] = Field(min_length=1, max_length=1000)
    truncated_alerts: int = Field(0, alias="truncatedAlerts", ge=0, le=MAX_DB_INT)


class EngineTarget(BaseModel):
    namespace: str | None = None
    name: str | None = None


class EngineRecommendation(BaseModel):
    action: str
    target: EngineTarget | None = None
    params: dict[str, Any] | None = None
    confidence: float = 0.0
    explanation: str = ""
    incident_kind: str | None = None


class EngineSeverity(BaseModel):
    level: str | None = None


class EngineModelRef(BaseModel):
    digest: str = ""


class EnginePrediction(BaseModel):
    """What the backend reads of the engine's ``/predict`` answer (the rest is stored as sent):
    an answer without this shape is no prediction."""

    severity: EngineSeverity | None = None
    recommendations: list[EngineRecommendation] | None = None
    model: EngineModelRef | None = None
    incident_kind: str | None = None


class IngestResult(BaseModel):
    received: int
    new_alerts: int
    resolved_alerts: int
    duplicates: int
    incidents: list[int]


class AlertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    fingerprint: str
    alertname: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    received_count: int


class IncidentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    status: str
    title: str
    severity: str
    namespace: str
    workload: str
    prediction: dict[str, Any] | None
    prediction_status: str
    prediction_note: str
    created_at: datetime
    resolved_at: datetime | None


class IncidentDetail(IncidentRead):
    alerts: list[AlertRead]


class IncidentPage(BaseModel):
    items: list[IncidentRead]
    next_cursor: int | None
