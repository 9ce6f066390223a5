"""Work outside a request: drain the fallback journal and write signed checkpoints.

The backend runs :func:`run` (both); the engine and the executor run :func:`drain`, for the
journal of their own data directory, which in a cluster no other service reads."""

from __future__ import annotations

import asyncio

from aegis.audit import keys
from aegis.audit.checkpoint import write_checkpoint
from aegis.audit.journal import AuditWriter
from aegis.core import metrics
from aegis.core.context import AppContext
from aegis.core.logging import JobFailures, get_logger
from aegis.storage.errors import StorageError
from aegis.storage.service import open_store

log = get_logger(__name__)
DRAIN_EVERY_S = 5.0


def checkpoint_once(ctx: AppContext) -> bool:
    """Write one checkpoint; an unreachable object store counts as an audit write error."""
    settings = ctx.settings
    try:
        private_key = keys.load_or_create_private_key(settings.effective_audit_signing_key_file)
        store = open_store(settings.effective_audit_store_url)
        with ctx.db.unit_of_work() as session:
            write_checkpoint(session=session, store=store, private_key=private_key)
    except StorageError as exc:
        metrics.AUDIT_WRITE_ERRORS.labels("object_store").inc()
        log.warning("audit_checkpoint_failed", backend="object_store", error=exc.message)
        return False
    return True


async def run(ctx: AppContext, *, every_s: float = DRAIN_EVERY_S) -> None:
    """Forever: drain the journal every ``every_s``, checkpoint every interval."""
    writer: AuditWriter = ctx.extras["audit_writer"]
    since_checkpoint = ctx.settings.audit_checkpoint_interval_s  # checkpoint soon after start
    failures = JobFailures(log, "audit_job_failed")
    while True:
        await asyncio.sleep(every_s)
        since_checkpoint += every_s
        try:
            await asyncio.to_thread(writer.drain)
            due = since_checkpoint >= ctx.settings.audit_checkpoint_interval_s
            if due and await asyncio.to_thread(checkpoint_once, ctx):
                since_checkpoint = 0.0
        except Exception as exc:  # a job must outlive any one failure
            failures.failed(exc)
        else:
            failures.succeeded()


async def drain(writer: AuditWriter, *, every_s: float | None = None) -> None:
    """Forever: move what ``writer``'s journal holds into the chain every ``every_s``, so that
    events journalled while the database was down land once it is back, whether or not this
    service records another event (its next one would drain it too)."""
    failures = JobFailures(log, "audit_job_failed")
    while True:
        await asyncio.sleep(every_s or DRAIN_EVERY_S)
        try:
            await asyncio.to_thread(writer.drain)
        except Exception as exc:  # a job must outlive any one failure
            failures.failed(exc)
        else:
            failures.succeeded()
