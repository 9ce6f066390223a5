from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from aegis.core.types import StoredText


class ModelVersionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    version: str
    stage: str
    digest: str
    size: int
    signer_key_id: str
    archive_uri: str
    pushed_by: str
    created_at: datetime


class PromotionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(pattern="^(staging|production|archived)$")


class PromotionDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: StoredText = Field("", max_length=2000)


class PromotionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    version: str
    target_stage: str
    status: str
    requested_by: str
    decided_by: str | None
    comment: str
    created_at: datetime
    decided_at: datetime | None
