"""The audit jobs: journalled events reach the chain (the backend's, and the engine's and the
executor's own journal), checkpoints follow, failures pass."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from aegis.audit import checkpoint, jobs, keys, verify
from aegis.audit.journal import AuditWriter, Journal
from aegis.audit.models import AuditEntry
from aegis.audit.schemas import AuditEventCreate
from aegis.core.config import Settings
from aegis.core.context import AppContext
from aegis.database.core import Database
from aegis.engine import app as engine_app
from aegis.executor import app as executor_app
from aegis.storage.service import open_store
from tests.support.factories import audit_events

TICK_S = 0.05


@pytest.fixture
def ctx(
    make_settings: Callable[..., Settings], db_url: str, tmp_path: Path
) -> Iterator[AppContext]:
    settings = make_settings(
        database_url=db_url,
        audit_store_url=(tmp_path / "audit-store").as_uri(),
        audit_checkpoint_interval_s=1.0,
    )
    context = AppContext.build(settings, service="test")
    context.extras["audit_writer"] = AuditWriter(context.db, tmp_path / "journal.jsonl")
    yield context
    context.close()


async def _until(done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "the audit job did not get there"
        await asyncio.sleep(TICK_S)


def _run_job_until(ctx: AppContext, done: Callable[[], bool]) -> None:
    async def scenario() -> None:
        job = asyncio.create_task(jobs.run(ctx, every_s=TICK_S))
        try:
            await _until(done)
        finally:
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job

    asyncio.run(scenario())


def _checkpoints(ctx: AppContext) -> list[str]:
    return open_store(ctx.settings.effective_audit_store_url).list(checkpoint.PREFIX)


def test_journalled_events_reach_the_chain_and_a_signed_checkpoint_covers_them(
    ctx: AppContext,
) -> None:
    writer: AuditWriter = ctx.extras["audit_writer"]
    with writer.journal.locked():  # as when the database was down for the request
        for i in range(3):
            writer.journal.append(
                AuditEventCreate(
                    category="auth", event_type="test.journalled", actor="a", data={"i": i}
                )
            )

    _run_job_until(ctx, lambda: writer.journal.pending() == 0 and bool(_checkpoints(ctx)))

    public_key = keys.load_public_key(ctx.settings.effective_audit_verify_key_file)
    with ctx.db.unit_of_work() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.event_type == "test.journalled")
        ).all()
        report = verify.verify(
            session=session,
            store=open_store(ctx.settings.effective_audit_store_url),
            public_key=public_key,
        )
    assert [json.loads(r.data)["i"] for r in rows] == [0, 1, 2]
    assert report.ok
    assert report.checkpoints >= 1 and report.head_seq >= 3


def test_the_job_outlives_an_unreachable_checkpoint_store(
    make_settings: Callable[..., Settings], db_url: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    settings = make_settings(
        database_url=db_url,
        audit_store_url=(blocker / "store").as_uri(),
        audit_checkpoint_interval_s=1.0,
    )
    context = AppContext.build(settings, service="test")
    writer = AuditWriter(context.db, tmp_path / "journal.jsonl")
    context.extras["audit_writer"] = writer
    try:
        with writer.journal.locked():
            writer.journal.append(AuditEventCreate(category="auth", event_type="x", actor="a"))
        # the first checkpoint fails; the job keeps draining
        _run_job_until(context, lambda: writer.journal.pending() == 0)
    finally:
        context.close()


@pytest.mark.parametrize(
    "build", [engine_app.create_app, executor_app.create_app], ids=["engine", "executor"]
)
def test_the_engine_and_the_executor_drain_their_own_journal(
    build: Callable[[Settings], FastAPI],
    make_settings: Callable[..., Settings],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a service journalled while the database was down (a refused caller, a model load)
    reaches the chain once it is back, without waiting for that service's next event: in a
    cluster each pod has a journal of its own, which the backend never sees."""
    monkeypatch.setattr(jobs, "DRAIN_EVERY_S", TICK_S)
    settings = make_settings(database_url=db_url, background_jobs=True, executor_backend="local")
    journal = Journal(settings.audit_journal_path)
    with journal.locked():
        journal.append(AuditEventCreate(category="auth", event_type="test.journalled", actor="a"))

    with TestClient(build(settings)):
        asyncio.run(_until(lambda: journal.pending() == 0))

    database = Database(db_url)
    try:
        assert [e.actor for e in audit_events(database, "test.journalled")] == ["a"]
    finally:
        database.dispose()
