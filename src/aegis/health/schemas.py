from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Probe = Literal["up", "down", "disabled"]


class HealthRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    status: Literal["ok", "degraded", "down"]
    database: Probe
    redis: Probe
    ai_engine: Probe = Field(serialization_alias="aiEngine")
    version: str


class PingRead(BaseModel):
    status: Literal["ok"]
    uptime: float
