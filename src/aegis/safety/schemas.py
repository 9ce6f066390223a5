from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aegis.core.types import StoredText

Verdict = Literal["confirmed", "dismissed"]


class FlagRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    reason: str
    subject_kind: str
    subject_id: str
    excerpt: str
    raised_by: str
    status: str
    reviewed_by: str | None
    review_note: str
    created_at: datetime
    reviewed_at: datetime | None


class FlagPage(BaseModel):
    items: list[FlagRead]
    next_cursor: int | None


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    note: StoredText = Field("", max_length=2000)


class DrillFlagCreate(BaseModel):
    """A synthetic flag for a game-day drill (it counts in ``aegis_safety_flags_total``)."""

    model_config = ConfigDict(extra="forbid")

    note: StoredText = Field("", max_length=200)
