from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aegis.audit import canonical
from aegis.core.types import PRINTABLE, StoredText

# The model that recommended an action, as the engine names it: its signed archive's digest
# (docs/engine.md), or that of its files.
MODEL_DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
APPROVAL_HASH_PATTERN = r"^[0-9a-f]{64}$"  # SHA-256, as ActionRead.approval_hash shows it


class ActionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # names and keys: a control character is refused here (their exact shapes are the
    # executor's, checked before anything is stored); free text keeps what can be stored
    action: str = Field(min_length=1, max_length=64, pattern=PRINTABLE)
    namespace: str = Field(min_length=1, max_length=63, pattern=PRINTABLE)
    name: str = Field(min_length=1, max_length=253, pattern=PRINTABLE)
    params: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str = Field(min_length=1, max_length=200, pattern=PRINTABLE)
    reason: StoredText = Field("", max_length=2000)
    incident_id: int | None = None
    incident_kind: str | None = Field(None, max_length=64, pattern=PRINTABLE)
    confidence: float | None = Field(None, ge=0, le=1)
    severity: str | None = Field(None, pattern="^(critical|warning|info)$")
    model_digest: str | None = Field(None, max_length=128, pattern=MODEL_DIGEST_PATTERN)

    @field_validator("params")
    @classmethod
    def _canonical_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Params the request's hash and its audit record can be computed over: JSON without
        NaN, Infinity (or a number past a float's range) or half of a surrogate pair, which
        Python's JSON parser accepts and canonical JSON has no form for."""
        try:
            canonical.canonical(value)
        except ValueError:  # UnicodeEncodeError included
            raise ValueError(
                "must be plain JSON: no NaN, Infinity or number out of range, "
                "no unpaired surrogate escape"
            ) from None
        return value


class ApprovalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approval_hash: str = Field(min_length=64, max_length=64, pattern=APPROVAL_HASH_PATTERN)
    comment: StoredText = Field("", max_length=2000)


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: StoredText = Field("", max_length=2000)


class ActionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    action: str
    namespace: str
    name: str
    params: dict[str, Any]
    reason: str
    idempotency_key: str
    requested_by: str
    incident_id: int | None
    confidence: float | None
    status: str
    decision: str
    decision_reason: str
    decision_policies: list[dict[str, Any]]
    policy_set_digest: str
    model_digest: str | None
    dry_run_diff: list[dict[str, Any]] | None
    approval_hash: str | None
    approved_by: str | None
    result: dict[str, Any] | None
    error: str | None
    attempts: int
    effective: str | None
    expires_at: datetime | None
    created_at: datetime


class ActionPage(BaseModel):
    items: list[ActionRead]
    next_cursor: str | None = None  # pass as ?cursor= for the next (older) page


class OutcomeRead(BaseModel):
    incident_kind: str
    action: str
    successes: int
    failures: int
