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


class ReplayBody(BaseModel):
    since: datetime
    policies: list[dict[str, Any]] | None = None
    all: bool = False


class ReplayRowRead(BaseModel):
    action_id: str
    created_at: datetime
    action: str
    target: str
    requested_by: str
    recorded: str
    candidate: str
    reason: str


class ReplayRead(BaseModel):
    replayed: int
    changed: int
    rows: list[ReplayRowRead]
