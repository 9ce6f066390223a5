"""The model registry: every pushed version, its stage, and promotion requests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from aegis.database.core import Base


class ModelVersion(Base):
    __tablename__ = "model_versions"
    # One row per archive URI: a push to another version's location is refused, however many
    # pushes run at once (aegis.registry.catalog.push).
    __table_args__ = (UniqueConstraint("name", "version"), UniqueConstraint("archive_uri"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    archive_uri: Mapped[str] = mapped_column(String(1024))
    signature_uri: Mapped[str] = mapped_column(String(1024))
    digest: Mapped[str] = mapped_column(String(64))  # hex SHA-256 of the archive
    size: Mapped[int] = mapped_column(BigInteger)
    signer_key_id: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    stage: Mapped[str] = mapped_column(String(16))  # staging | production | archived
    pushed_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PromotionRequest(Base):
    __tablename__ = "model_promotions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    target_stage: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # pending | approved | rejected
    requested_by: Mapped[str] = mapped_column(String(256))
    decided_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    comment: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
