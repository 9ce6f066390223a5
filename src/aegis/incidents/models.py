from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from aegis.database.core import Base


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_group_key_status", "group_key", "status"),
        Index("ix_incidents_prediction_status", "prediction_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # open | resolved
    title: Mapped[str] = mapped_column(String(512))
    severity: Mapped[str] = mapped_column(String(16))
    namespace: Mapped[str] = mapped_column(String(256))
    workload: Mapped[str] = mapped_column(String(256))
    prediction: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    prediction_status: Mapped[str] = mapped_column(String(32))
    prediction_note: Mapped[str] = mapped_column(Text, default="")
    # Which backend is asking the engine (prediction_status "predicting"), and since when: see
    # aegis.incidents.jobs (another may take it over once the lease has run out).
    prediction_claim: Mapped[str | None] = mapped_column(String(36), nullable=True)
    prediction_claimed_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    alertname: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))  # firing | resolved
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    received_count: Mapped[int] = mapped_column(Integer, default=1)
    last_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
