from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from aegis.database.core import Base


class ActionRequest(Base):
    __tablename__ = "action_requests"
    __table_args__ = (
        Index("ix_action_requests_status_next", "status", "next_attempt_at"),
        Index("ix_action_requests_target", "namespace", "name", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(256))
    subjects: Mapped[list[str]] = mapped_column(JSON)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    incident_kind: Mapped[str | None] = mapped_column(String(64), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    severity: Mapped[str | None] = mapped_column(String(16), nullable=True)
    model_digest: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(24))
    decision: Mapped[str] = mapped_column(String(24))
    decision_reason: Mapped[str] = mapped_column(Text)
    decision_policies: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    policy_set_digest: Mapped[str] = mapped_column(String(80))
    dry_run_diff: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    approval_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    effective: Mapped[str | None] = mapped_column(String(16), nullable=True)
    watch_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ActionOutcome(Base):
    """What happened when an action was tried for a kind of incident: what the engine learns."""

    __tablename__ = "action_outcomes"

    incident_kind: Mapped[str] = mapped_column(String(256), primary_key=True)
    action: Mapped[str] = mapped_column(String(64), primary_key=True)
    successes: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
