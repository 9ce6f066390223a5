"""The executor's exceptions: each is one line for the caller, with a stable code and status.

Nothing in a rejection is executed. ``ActionFailed`` is different: it is raised by a backend while
acting and becomes a recorded ``status: "failed"`` result, never an HTTP error.
"""

from __future__ import annotations

import math
from typing import Any

from aegis.core.errors import AegisError, Conflict, Forbidden, ServiceUnavailable, Unauthorized


class ExecutorError(AegisError):
    """Root of the executor's expected failures."""

    code = "executor_error"


# --- 401: who is calling ---------------------------------------------------------------------
class SignatureRejected(ExecutorError, Unauthorized):
    """The request is not signed by a holder of the executor secret (or is stale or replayed)."""

    code = "signature_invalid"


class SignatureMissing(SignatureRejected):
    code = "signature_missing"


class TimestampOutOfWindow(SignatureRejected):
    code = "timestamp_out_of_window"


class NonceReplayed(SignatureRejected):
    code = "nonce_replayed"


# --- 403: what may be done -------------------------------------------------------------------
class ActionNotAllowed(ExecutorError, Forbidden):
    code = "action_not_allowed"


class NamespaceNotAllowed(ExecutorError, Forbidden):
    code = "namespace_not_allowed"


# --- 409: idempotency ------------------------------------------------------------------------
class IdempotencyConflict(ExecutorError, Conflict):
    code = "idempotency_conflict"


class IdempotencyInProgress(ExecutorError, Conflict):
    code = "idempotency_in_progress"


# --- 422: what was asked ---------------------------------------------------------------------
class InvalidActionRequest(ExecutorError):
    code = "invalid_action_request"
    status_code = 422


class ReplicasOutOfBounds(InvalidActionRequest):
    code = "replicas_out_of_bounds"


# --- 503: not now ----------------------------------------------------------------------------
class ExecutorDisabled(ExecutorError, ServiceUnavailable):
    code = "executor_disabled"


class NonceStoreUnavailable(ExecutorError, ServiceUnavailable):
    code = "nonce_store_unavailable"


class NonceStoreReset(ExecutorError, ServiceUnavailable):
    """The nonce store's memory began after the request was signed (Redis restarted, was
    flushed or failed over), so it cannot tell whether this nonce was used before. Nothing ran:
    sign again (a fresh timestamp and nonce) after ``Retry-After`` seconds."""

    code = "nonce_store_reset"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        self.headers = {"Retry-After": str(self.retry_after_s)}


class IdempotencyStoreUnavailable(ExecutorError, ServiceUnavailable):
    code = "idempotency_store_unavailable"


# --- client side -----------------------------------------------------------------------------
class ExecutorRejected(ExecutorError):
    """The executor refused: ``executor_status``, ``code`` and ``retry_after_s`` (its
    ``Retry-After`` in seconds, or None) are its answer.

    Raised through the backend's API it is a 502 (the executor's 401 is not the user's 401).
    """

    status_code = 502

    def __init__(
        self,
        message: str,
        *,
        executor_status: int,
        code: str,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.executor_status = executor_status
        self.retry_after_s = retry_after_s  # the executor's Retry-After, when it sent one


class ExecutorUnreachable(ExecutorError, ServiceUnavailable):
    code = "executor_unreachable"


# --- raised by a backend while acting --------------------------------------------------------
class ActionFailed(ExecutorError):
    """The backend tried and could not complete the action; the result is recorded as failed."""

    code = "action_failed"
    status_code = 502

    def __init__(
        self,
        message: str,
        *,
        before: dict[str, Any] | None = None,
        audit_ids: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.before = dict(before or {})
        self.audit_ids = list(audit_ids or [])


class LogsUnavailable(ExecutorError):
    """The target's logs could not be read (the API server refused or failed)."""

    code = "logs_unavailable"
    status_code = 502
