"""Sending an action request to the executor, and what its answer makes of the request.

The dispatcher (:mod:`aegis.actions.jobs`) decides when a request is sent; this module builds
what is sent (:func:`executor_request`, :func:`dry_run`) and records how a send ended
(:func:`send`): the executor's result, a refusal, a retry after a backoff while the answer is
lost or the executor says "not now", or ``unknown`` when a request that may have acted runs out
of attempts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from aegis.actions import service
from aegis.actions.models import ActionRequest
from aegis.core.config import Settings
from aegis.core.logging import get_logger
from aegis.database.core import Database
from aegis.executor.errors import ExecutorRejected, ExecutorUnreachable, IdempotencyInProgress
from aegis.executor.schemas import ExecutorActionRequest, ExecutorActionResult

log = get_logger(__name__)
MAX_BACKOFF_S = 60.0
# The longest an executor's Retry-After defers a retry (its nonce_store_reset asks for about
# 60 s, the signature window); a longer one is cut to this, so no answer parks a request.
MAX_RETRY_AFTER_S = 120.0
# The executor's answers that refuse a request before it claims the idempotency key, so before
# anything runs (docs/executor.md): the signature (401), its allow-list (403), the body or the
# replica bounds (422). A request refused so on its first send ends ``refused``, not ``failed``,
# and a ``max_actions`` limit does not count it.
REFUSED_BEFORE_ACTING = frozenset({401, 403, 422})
# Why a sent request ends ``unknown`` when its attempts run out (:func:`_outcome_unknown`).
STILL_ACTING = "the executor was still acting on it (or stopped while it did)"
NO_ANSWER = (
    "it was sent but no answer to it was read (the executor unreachable or unavailable since)"
)


class Executor(Protocol):
    def submit(self, request: ExecutorActionRequest) -> ExecutorActionResult: ...


def executor_request(request: ActionRequest, *, dry_run: bool, key: str) -> ExecutorActionRequest:
    return ExecutorActionRequest(
        action_id=request.id,
        action=request.action,
        namespace=request.namespace,
        name=request.name,
        params=request.params,
        idempotency_key=key,
        dry_run=dry_run,
        requested_by=request.requested_by,
    )


def dry_run(executor: Executor, request: ActionRequest) -> ExecutorActionResult:
    key = f"{request.id}:dry-run:{request.attempts}:{service.now().timestamp()}"
    return executor.submit(executor_request(request, dry_run=True, key=key))


def diff(result: ExecutorActionResult) -> list[dict[str, Any]]:
    return [entry.model_dump(mode="json") for entry in result.diff]


def send(
    database: Database,
    settings: Settings,
    executor: Executor,
    action_id: str,
    *,
    sent_before: bool,
) -> None:
    """The real request, with the request id as its idempotency key: the executor acts once
    per key and answers a key it has acted on with its stored result."""
    try:
        with database.unit_of_work() as session:
            request = service.get(session=session, action_id=action_id)
            outgoing = executor_request(request, dry_run=False, key=request.id)
        result = executor.submit(outgoing)
    except ExecutorUnreachable as exc:  # it may have acted: sent again, never re-checked
        retry_later(database, settings, action_id, exc.message, was="running", sent=True)
        return
    except ExecutorRejected as exc:
        if exc.executor_status == 503:  # nothing ran now; an earlier send may have acted
            error = f"executor unavailable: {exc.message}"
            retry_later(
                database,
                settings,
                action_id,
                error,
                was="running",
                sent=sent_before,
                at_least_s=exc.retry_after_s,
            )
            return
        if exc.code == IdempotencyInProgress.code:  # an earlier send of this key is acting now
            error = f"executor still acting on it: {exc.message}"
            retry_later(
                database, settings, action_id, error, was="running", sent=True, still_acting=True
            )
            return
        if sent_before:  # the answer to an earlier send was never read: it may have acted
            why = (
                f"the executor refused the re-send ({exc.message}), and the first send's "
                "outcome is not known"
            )
            _resend_refused(database, action_id, why, executor_status=exc.executor_status)
            return
        # A first send refused by status before the executor claims the key: nothing ran.
        refused = exc.executor_status in REFUSED_BEFORE_ACTING
        error = f"executor refused: {exc.message}"
        finish(database, settings, action_id, None, error, refused=refused)
        return
    finish(database, settings, action_id, result, result.error)


def retry_later(
    database: Database,
    settings: Settings,
    action_id: str,
    error: str,
    *,
    was: str,
    sent: bool,
    still_acting: bool = False,
    at_least_s: float | None = None,
) -> None:
    """Try again after a backoff (or the executor's ``Retry-After``, ``at_least_s``, when
    longer; at most :data:`MAX_RETRY_AFTER_S`): ``approved`` (confirmed again first) when
    nothing was sent, ``running`` (sent again as it is) when it was. Nothing when the request
    is no longer ``was`` (another backend moved it on). Out of attempts it ends ``unknown``
    when it was sent (it may have acted: its answer was never read, or the executor was still
    acting on it), else ``failed`` (nothing ran)."""
    with database.unit_of_work() as session:
        request = service.get(session=session, action_id=action_id, lock=True)
        if request.status != was:
            return
        request.attempts += 1
        request.error = error
        if request.attempts >= settings.action_max_attempts:
            if still_acting:
                _outcome_unknown(session, request, STILL_ACTING)
            elif sent:
                _outcome_unknown(session, request, NO_ANSWER, last_error=error)
            else:
                request.status, request.updated_at = "failed", service.now()
                service.audit(
                    session,
                    request,
                    "action.failed",
                    "system",
                    error=error,
                    attempts=request.attempts,
                )
            return
        backoff = min(MAX_BACKOFF_S, 0.5 * 2**request.attempts)
        backoff = max(backoff, min(at_least_s or 0.0, MAX_RETRY_AFTER_S))
        request.status = "running" if sent else "approved"
        request.updated_at = service.now()
        request.next_attempt_at = request.updated_at + timedelta(seconds=backoff)


def _resend_refused(database: Database, action_id: str, why: str, *, executor_status: int) -> None:
    """End a ``running`` request whose re-send the executor refused: ``unknown``, not
    ``failed`` (nor ``refused``): the refusal says nothing of the earlier send, which may have
    acted. Nothing when another backend moved it on."""
    with database.unit_of_work() as session:
        request = service.get(session=session, action_id=action_id, lock=True)
        if request.status != "running":
            return
        request.attempts += 1
        _outcome_unknown(session, request, why, executor_status=executor_status)


def _outcome_unknown(session: Session, request: ActionRequest, why: str, **data: Any) -> None:
    """End a sent request whose outcome the dispatcher cannot learn (``why``): ``unknown``,
    audited (``action.outcome_unknown``, with ``data``). Not ``failed``: the action may have
    succeeded, or the executor stopped while acting (its key stays in progress,
    docs/executor.md); only the target tells."""
    request.status, request.updated_at = "unknown", service.now()
    request.error = (
        f"outcome unknown after {request.attempts} attempts: {why}; it may have acted: "
        "check the target"
    )
    service.audit(
        session,
        request,
        "action.outcome_unknown",
        "system",
        error=request.error,
        attempts=request.attempts,
        **data,
    )
    log.warning("action_outcome_unknown", action_id=request.id, attempts=request.attempts)


def finish(
    database: Database,
    settings: Settings,
    action_id: str,
    result: ExecutorActionResult | None,
    error: str | None,
    *,
    was: str = "running",
    refused: bool = False,
) -> None:
    """Record the executor's result, or its refusal (``result`` None): ``refused`` when
    nothing ran, else ``failed``."""
    with database.unit_of_work() as session:
        request = service.get(session=session, action_id=action_id, lock=True)
        if request.status != was:
            return
        request.attempts += 1
        if result is not None:
            request.status = result.status
        else:
            request.status = "refused" if refused else "failed"
        request.error = error
        request.updated_at = service.now()
        if result is not None:
            request.result = result.model_dump(mode="json")
        if request.status == "succeeded" and request.incident_id is not None:
            request.watch_until = service.now() + timedelta(
                seconds=settings.action_recheck_window_s
            )
        service.audit(
            session,
            request,
            "action.executed",
            "executor",
            result=request.status,
            error=error,
            diff=diff(result) if result else None,
            kube_audit_ids=result.kube_audit_ids if result else [],
            backend=result.backend if result else None,
        )
