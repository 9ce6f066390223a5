"""API shapes of the policy store (the document itself is :class:`aegis.policy.Policy`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class PolicyRead(BaseModel):
    id: str
    version: int
    active: bool
    document: dict[str, Any]


class PolicyVersionRead(BaseModel):
    policy_id: str
    version: int
    change: str
    created_by: str
    created_at: datetime
    document: dict[str, Any]


class PolicyDigestRead(BaseModel):
    digest: str
    policies: int


class EvaluationRead(BaseModel):
    decision: str
    policies: list[dict[str, Any]]
    reason: str
    policy_set_digest: str
