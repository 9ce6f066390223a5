"""The dispatcher: dry runs, expiry, execution with retries, and the re-check after acting.

``tick(...)`` does one pass and is what tests call; ``run(ctx)`` calls it forever in the backend.
Each step is its own short transaction; the HTTP call to the executor happens between them, so
no database lock is held while the executor works. What is sent, and what the executor's answer
makes of the request (a result, a refusal, a retry, ``unknown``), is :mod:`aegis.actions.sending`.

An approved request is confirmed first (a person's approval: the dry run again, voided if the
diff changed), then claimed (``running``), then sent. So ``running`` means sent, or about to be:
the executor may have acted, and from then on the request is only ever sent again with the same
idempotency key, never dry-run again (a dry run would show the change done, not the change
approved, and void an approval whose action ran). An executor that already acted answers the key
with its stored result, so the request ends as the executor left the target. That happens to a
request whose answer was lost (the executor unreachable after sending: retried with backoff,
still ``running``) and to one whose backend stopped before recording the result: after
:data:`RUNNING_LEASE_S` another backend (or the same, restarted) takes it over
(:func:`reclaim_abandoned`). A request sent again while the executor still acts on its first
send (a slow API server: the executor answers 409 ``idempotency_in_progress``) stays ``running``
and is asked again after a backoff; when its attempts run out so, it ends ``unknown``, never
``failed``: it may have acted, and only the target tells. So does a sent request whose attempts
run out while the executor is unreachable or answers 503: no answer to a send that may have
acted was read. Only a request never sent (nothing ran) ends ``failed`` when they run out. A
re-send the executor refuses (401, 403, 409 ``idempotency_conflict``, 422: its secret, its
allow-list or its bounds changed meanwhile) ends ``unknown`` at once: the refusal says nothing of
the earlier send.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from sqlalchemy import select, update

from aegis.actions import sending, service
from aegis.actions.models import ActionRequest
from aegis.actions.sending import Executor
from aegis.core.config import Settings
from aegis.core.context import AppContext
from aegis.core.logging import JobFailures, get_logger, request_id_var
from aegis.database.core import Database
from aegis.executor.errors import ExecutorRejected, ExecutorUnreachable
from aegis.flags import service as flags

log = get_logger(__name__)
KILL_SWITCH_FLAG = "executor_enabled"
TICK_S = 0.5
# A claimed request still `running` after this long was claimed by a backend that stopped (a
# dispatch is two executor calls of at most a few seconds each): it is dispatched again.
RUNNING_LEASE_S = 900.0


def dispatch_enabled(settings: Settings, database: Database) -> bool:
    """The kill switch: EXECUTOR_ENABLED=false or `aegis executor disable` stops all dispatch."""
    if not settings.executor_enabled:
        return False
    with database.unit_of_work() as session:
        return flags.get(session=session, name=KILL_SWITCH_FLAG, default="true") != "false"


def expire_pending(database: Database) -> int:
    with database.unit_of_work() as session:
        due = list(
            session.scalars(
                select(ActionRequest)
                .where(
                    ActionRequest.status == "pending_approval",
                    ActionRequest.expires_at <= service.now(),
                )
                # locked, so an approval committed meanwhile is seen, not overwritten
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        for request in due:
            service.expire(session=session, request=request)
    return len(due)


def dry_run_pending(database: Database, executor: Executor) -> None:
    with database.unit_of_work() as session:
        pending = list(
            session.scalars(
                select(ActionRequest).where(
                    ActionRequest.status == "pending_approval", ActionRequest.dry_run_diff.is_(None)
                )
            )
        )
    for request in pending:  # detached copies: no transaction is open during the HTTP call
        try:
            result = sending.dry_run(executor, request)
        except ExecutorUnreachable as exc:
            log.warning("dry_run_failed", action_id=request.id, error=exc.message)
            continue
        except ExecutorRejected as exc:
            # The executor answered no (its allow-list, its replica bounds): kept on the request
            # for the approver, who has no dry run to approve and would not know why.
            log.warning("dry_run_failed", action_id=request.id, error=exc.message)
            _dry_run_refused(
                database, request.id, f"the executor refused the dry run: {exc.message}"
            )
            continue
        if result.status == "failed":  # the target is not there, say: no diff to approve
            log.warning("dry_run_failed", action_id=request.id, error=result.error)
            _dry_run_refused(database, request.id, f"the dry run failed: {result.error}")
            continue
        with database.unit_of_work() as session:
            current = service.get(session=session, action_id=request.id, lock=True)
            if current.status == "pending_approval" and current.dry_run_diff is None:
                current.error = None  # an earlier refusal (see _dry_run_refused) is over
                service.set_dry_run(session=session, request=current, diff=sending.diff(result))


def _dry_run_refused(database: Database, action_id: str, error: str) -> None:
    with database.unit_of_work() as session:
        current = service.get(session=session, action_id=action_id, lock=True)
        if current.status == "pending_approval" and current.dry_run_diff is None:
            current.error = error


def reclaim_abandoned(database: Database) -> list[str]:
    """Take over the requests left ``running`` past the lease, audited; their ids, to send again.

    A ``running`` request was confirmed (its approval re-checked) before it was claimed, and it
    may have reached the executor: it is sent again with the same idempotency key, never dry-run
    again, so the executor's answer (its stored result when it had acted) decides its end."""
    now = service.now()
    cutoff = now - timedelta(seconds=RUNNING_LEASE_S)
    with database.unit_of_work() as session:
        abandoned = list(
            session.scalars(
                select(ActionRequest)
                .where(ActionRequest.status == "running", ActionRequest.updated_at < cutoff)
                # another backend reclaiming at the same moment skips the rows held here
                .with_for_update(skip_locked=True)
            )
        )
        for request in abandoned:
            claimed_at = service.aware(request.updated_at).isoformat()
            request.next_attempt_at, request.updated_at = now, now  # the lease is ours now
            service.audit(
                session,
                request,
                "action.dispatch_reclaimed",
                "system",
                claimed_at=claimed_at,
                reason="the backend that claimed it stopped before recording a result; "
                "sent again with the same idempotency key",
            )
            log.warning("action_dispatch_reclaimed", action_id=request.id, claimed_at=claimed_at)
        return [request.id for request in abandoned]


def _retries_due(database: Database) -> list[str]:
    """Sent requests whose next try is due (the answer was lost, the executor said "not now"),
    taken: a retry is scheduled after the claim (``next_attempt_at > updated_at``), and taking
    it moves ``updated_at`` past it, so one backend takes each."""
    now = service.now()
    due = (
        ActionRequest.status == "running",
        ActionRequest.next_attempt_at <= now,
        ActionRequest.next_attempt_at > ActionRequest.updated_at,
    )
    with database.unit_of_work() as session:
        ids = list(session.scalars(select(ActionRequest.id).where(*due).limit(20)))
        taken = []
        for action_id in ids:
            changed = session.execute(
                update(ActionRequest)
                .where(ActionRequest.id == action_id, *due)
                .values(updated_at=now)
            )
            if changed.rowcount:  # type: ignore[attr-defined]
                taken.append(action_id)
    return taken


def _due(database: Database) -> list[str]:
    """Approved requests due to be dispatched (not claimed yet: see :func:`execute`)."""
    with database.unit_of_work() as session:
        return list(
            session.scalars(
                select(ActionRequest.id)
                .where(
                    ActionRequest.status == "approved",
                    ActionRequest.next_attempt_at <= service.now(),
                )
                .limit(20)
            )
        )


def _claim(database: Database, action_id: str) -> bool:
    """``approved`` -> ``running``, once: False when another backend claimed it first (or
    voided, or finished it)."""
    with database.unit_of_work() as session:
        changed = session.execute(
            update(ActionRequest)
            .where(ActionRequest.id == action_id, ActionRequest.status == "approved")
            .values(status="running", updated_at=service.now())
        )
        return bool(changed.rowcount)  # type: ignore[attr-defined]


def _still_what_was_approved(
    executor: Executor, database: Database, settings: Settings, action_id: str
) -> bool:
    """Re-run the dry run of an approved request; void the approval if the change differs.

    Run before the claim, never after: once ``running``, a request may have reached the
    executor, and a dry run then shows the change done, not the change approved."""
    with database.unit_of_work() as session:
        request = service.get(session=session, action_id=action_id)
    if request.approved_by is None:
        return True  # allowed by policy, no human sign-off to protect
    result = sending.dry_run(executor, request)
    if service.approval_hash(request, sending.diff(result)) == request.approval_hash:
        return True
    with database.unit_of_work() as session:
        current = service.get(session=session, action_id=action_id, lock=True)
        if current.status != "approved" or current.approval_hash != request.approval_hash:
            return False  # another backend claimed, voided or finished it meanwhile
        current.status = "pending_approval"
        current.approved_by = None
        current.expires_at = service.now() + timedelta(seconds=settings.action_approval_ttl_s)
        service.set_dry_run(session=session, request=current, diff=sending.diff(result))
        service.audit(
            session,
            current,
            "action.approval_voided",
            "system",
            reason="the dry-run diff changed since approval",
        )
    return False


def execute(database: Database, settings: Settings, executor: Executor, action_id: str) -> None:
    """Dispatch an approved request: confirm it (the dry run again, for a person's approval),
    claim it (``running``), send it."""
    request_id_var.set(f"action-{action_id}")  # forwarded to the executor as X-Request-ID
    try:
        if not _still_what_was_approved(executor, database, settings, action_id):
            return
    except ExecutorUnreachable as exc:
        sending.retry_later(database, settings, action_id, exc.message, was="approved", sent=False)
        return
    except ExecutorRejected as exc:
        if exc.executor_status == 503:  # "not now" (switched off, its stores down)
            error = f"executor unavailable: {exc.message}"
            sending.retry_later(
                database,
                settings,
                action_id,
                error,
                was="approved",
                sent=False,
                at_least_s=exc.retry_after_s,
            )
            return
        # only its dry run was ever sent (an approved request has not acted): nothing ran
        error = f"executor refused: {exc.message}"
        sending.finish(database, settings, action_id, None, error, was="approved", refused=True)
        return
    # Read again for every action, just before it is claimed: a switch flipped while a batch
    # runs stops the rest of the batch, which stays in the queue untouched.
    if not dispatch_enabled(settings, database):
        log.info("action_dispatch_held", action_id=action_id, reason="executor kill switch")
        return
    if _claim(database, action_id):
        sending.send(database, settings, executor, action_id, sent_before=False)


def send_again(database: Database, settings: Settings, executor: Executor, action_id: str) -> None:
    """Send a ``running`` request again (taken over, or its retry due), with its key."""
    request_id_var.set(f"action-{action_id}")
    if not dispatch_enabled(settings, database):
        with database.unit_of_work() as session:  # due again as soon as the switch is on
            request = service.get(session=session, action_id=action_id, lock=True)
            if request.status == "running":
                request.updated_at = service.now()
                request.next_attempt_at = request.updated_at + timedelta(seconds=TICK_S)
        log.info("action_dispatch_held", action_id=action_id, reason="executor kill switch")
        return
    sending.send(database, settings, executor, action_id, sent_before=True)


def recheck(database: Database) -> None:
    """Mark succeeded actions effective when their incident resolved within the window;
    ineffective (and escalate the incident) when the window passed with it still open."""
    from aegis.incidents.models import Incident

    with database.unit_of_work() as session:
        watched = list(
            session.scalars(
                select(ActionRequest)
                .where(
                    ActionRequest.status == "succeeded",
                    ActionRequest.effective.is_(None),
                    ActionRequest.incident_id.is_not(None),
                )
                # another backend's re-check holds the rows it is judging: skip them, so no
                # outcome is counted twice
                .with_for_update(skip_locked=True)
            )
        )
        for request in watched:
            incident = session.get(Incident, request.incident_id)
            if incident is None:
                continue
            if incident.status == "resolved":
                request.effective = "effective"
                service.record_outcome(session=session, request=request, success=True)
                service.audit(session, request, "action.effective", "system")
            elif request.watch_until and service.aware(request.watch_until) <= service.now():
                request.effective = "ineffective"
                incident.severity = "critical"
                service.record_outcome(session=session, request=request, success=False)
                service.audit(
                    session, request, "action.ineffective", "system", escalated_incident=incident.id
                )


def tick(database: Database, settings: Settings, executor: Executor) -> None:
    expire_pending(database)
    dry_run_pending(database, executor)
    if dispatch_enabled(settings, database):
        for action_id in reclaim_abandoned(database) + _retries_due(database):
            send_again(database, settings, executor, action_id)
        for action_id in _due(database):
            execute(database, settings, executor, action_id)
    recheck(database)


def wake(ctx: AppContext) -> None:
    """Run the dispatcher now instead of at its next tick (called after a commit)."""
    wakeup = ctx.extras.get("dispatch_wakeup")
    if wakeup is not None:
        loop, event = wakeup
        loop.call_soon_threadsafe(event.set)


async def run(ctx: AppContext) -> None:
    from aegis.executor.client import ExecutorClient

    client = ExecutorClient.from_settings(ctx.settings, timeout=10.0)
    event = asyncio.Event()
    ctx.extras["dispatch_wakeup"] = (asyncio.get_running_loop(), event)
    failures = JobFailures(log, "dispatcher_tick_failed")
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), TICK_S)
            event.clear()
            try:
                await asyncio.to_thread(tick, ctx.db, ctx.settings, client)
            except Exception as exc:  # the dispatcher must outlive any one failure
                failures.failed(exc)
            else:
                failures.succeeded()
    finally:
        ctx.extras.pop("dispatch_wakeup", None)
        client.close()
