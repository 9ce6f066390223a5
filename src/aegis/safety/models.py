from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from aegis.database.core import Base


class SafetyFlag(Base):
    """One item flagged for safety review: once per subject and reason."""

    __tablename__ = "safety_flags"
    __table_args__ = (
        UniqueConstraint("subject_kind", "subject_id", "reason", name="uq_safety_flags_subject"),
        Index("ix_safety_flags_status", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reason: Mapped[str] = mapped_column(String(32))
    subject_kind: Mapped[str] = mapped_column(String(32))  # incident, action, drill
    subject_id: Mapped[str] = mapped_column(String(64))
    excerpt: Mapped[str] = mapped_column(Text, default="")
    raised_by: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))  # open, confirmed, dismissed
    reviewed_by: Mapped[str | None] = mapped_column(String(256), nullable=True)
    review_note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
