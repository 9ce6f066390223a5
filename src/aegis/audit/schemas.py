from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Category = Literal["auth", "policy", "action", "model", "system"]


class AuditEventCreate(BaseModel):
    """What a caller records; the chain fields are filled in by the append."""

    category: Category
    event_type: str = Field(min_length=1, max_length=64)
    actor: str = Field(max_length=256)
    resource: str = Field("", max_length=512)
    outcome: str = Field("ok", max_length=32)
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = None
    created_at: datetime | None = None


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    event_id: str
    created_at: datetime
    category: str
    event_type: str
    actor: str
    resource: str
    outcome: str
    data: dict[str, Any]
    prev_hash: str
    entry_hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryRead]
    next_cursor: int | None
