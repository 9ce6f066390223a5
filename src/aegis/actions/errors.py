from __future__ import annotations

from aegis.core.errors import AegisError, Conflict, Forbidden, NotFound


class ActionNotFound(NotFound):
    code = "action_not_found"


class ActionInputInvalid(AegisError):
    """A request Aegis refuses before deciding anything; audited after the rollback."""

    code = "action_invalid"
    status_code = 422
    audited = True


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    audited = True


class ActionStateConflict(Conflict):
    code = "action_state_conflict"


class ActionExpired(ActionStateConflict):
    """An approval or rejection came after the request's deadline. The request is expired (and
    audited) by the refusal itself, so the expiry is committed, not rolled back with it."""

    code = "action_expired"
    commit = True


class ApprovalRefused(Conflict):
    """Decided again at the moment of approval, the request is now denied (a ``max_actions``
    limit reached since it was requested, a deny added): the refusal is audited and committed,
    and the request stays pending (a later approval may find the limit free again)."""

    code = "approval_refused"
    commit = True


class SelfApprovalForbidden(Forbidden):
    code = "self_approval_forbidden"


class ApprovalMismatch(Conflict):
    code = "approval_mismatch"
