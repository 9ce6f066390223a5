from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

Category = Literal["auth", "policy", "action", "model", "system"]
CATEGORIES: tuple[str, ...] = get_args(Category)
# Every event type Aegis records (docs/audit.md): what GET /api/v1/audit?type= takes besides a
# category, with any other type the log holds (an older version's).
EVENT_TYPES = frozenset(
    {
        *("access.denied", "authentication.failed", "login.succeeded", "refresh_token.reused"),
        *("request.refused", "user.created", "user.disabled", "user.enabled"),
        *("user.password_changed", "user.password_reset", "user.roles_changed"),
        *("policy.create", "policy.update", "policy.delete", "policy.restore"),
        "policy.evaluated",
        *("policy.bundle_applied", "policy.bundle_refused", "policy.bundle_rollback_forced"),
        *("action.requested", "action.allowed", "action.denied", "action.pending_approval"),
        *("action.approved", "action.rejected", "action.approval_refused"),
        *("action.approval_voided", "action.expired", "action.dispatch_reclaimed"),
        *("action.dry_run", "action.executed", "action.failed", "action.effective"),
        *("action.ineffective", "action.outcome_unknown"),
        *("model.bootstrapped", "model.pushed", "model.push_refused", "model.verified"),
        *("model.load_refused", "model.unloaded", "model.promotion_requested"),
        *("model.promotion_approved", "model.promotion_rejected", "model.promoted"),
        *("alert.received", "alert.resolved", "incident.opened", "incident.resolved"),
        *("incident.prediction_stored", "incident.prediction_unavailable"),
        *("safety.flagged", "safety.reviewed", "executor.enabled", "executor.disabled"),
        *("backup.created", "backup.pruned", "backup.restored", "backup.drill"),
        "audit.journal_refused",
    }
)


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
    # The stored text, as it is, when it is not a JSON object (a forged row: `aegis audit verify`
    # names it); data is then {}. None for every entry Aegis wrote.
    data_not_object: str | None = None
    prev_hash: str
    entry_hash: str


class AuditPage(BaseModel):
    items: list[AuditEntryRead]
    next_cursor: int | None
