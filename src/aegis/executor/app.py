"""The executor app factory: ``GET /health``, the signed ``POST /v1/actions`` and the signed,
read-only ``POST /v1/logs``.

Run it alone with ``aegis serve executor``; ``aegis up`` starts it as a child process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from sqlalchemy import inspect
from starlette.concurrency import run_in_threadpool

from aegis import __version__
from aegis.audit import jobs as audit_jobs
from aegis.audit.journal import AuditWriter
from aegis.audit.refusals import RefusalAuditor
from aegis.core.app import base_app
from aegis.core.config import Settings
from aegis.core.context import AppContext
from aegis.core.errors import ConfigError
from aegis.executor import service
from aegis.executor.backends import ExecutorBackend, build_backend
from aegis.executor.nonces import NonceStore, build_nonce_store
from aegis.executor.schemas import (
    ACTIONS_PATH,
    LOGS_PATH,
    ExecutorActionResult,
    ExecutorLogsResult,
)

R = TypeVar("R")


def create_app(
    settings: Settings,
    *,
    backend: ExecutorBackend | None = None,
    nonce_store: NonceStore | None = None,
) -> FastAPI:
    """Build the executor. ``backend``/``nonce_store`` default to the ones settings name."""
    settings.secret("executor_hmac_secret")  # fail closed: no secret, no executor
    policy = service.ExecutorPolicy.from_settings(settings)
    ctx = AppContext.build(settings, service="executor")
    try:
        if not inspect(ctx.db.engine).has_table("executor_actions"):
            raise ConfigError(
                "the executor's tables are missing from the database: run `aegis db upgrade`"
            )
        executor = service.Executor(
            settings=settings,
            database=ctx.db,
            backend=backend or build_backend(settings),
            nonces=nonce_store or build_nonce_store(settings, ctx.db),
            policy=policy,
            refusals=RefusalAuditor(
                AuditWriter(ctx.db, settings.audit_journal_path), service="executor"
            ),
        )
    except BaseException:
        ctx.close()
        raise
    ctx.extras["executor"] = executor
    service.initialise_metrics()
    app = base_app(
        ctx,
        title="Aegis executor",
        on_shutdown=[lambda _: executor.close()],
        jobs=[lambda _: audit_jobs.drain(executor.refusals.writer)],
    )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "enabled": settings.executor_enabled,
            "actions": "enabled" if settings.executor_enabled else "disabled",
            "backend": executor.backend.name,
        }

    @app.post(ACTIONS_PATH, response_model=ExecutorActionResult)
    async def submit_action(request: Request) -> ExecutorActionResult:
        return await _signed(service.handle_action, executor, request)

    @app.post(LOGS_PATH, response_model=ExecutorLogsResult)
    async def read_logs(request: Request) -> ExecutorLogsResult:
        return await _signed(service.handle_logs, executor, request)

    return app


async def _signed(handler: Callable[..., R], executor: service.Executor, request: Request) -> R:
    """Hand a signed request, exactly as received (method, path and query, headers, raw body:
    what the signature covers), to ``handler`` in a worker thread."""
    body = await request.body()
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return await run_in_threadpool(
        handler,
        executor,
        method=request.method,
        path=path,
        # a header sent twice is its values joined (RFC 9110 5.3), which no signature header's
        # shape allows: dict(request.headers) would keep only the first
        headers={name: ", ".join(request.headers.getlist(name)) for name in request.headers},
        body=body,
        peer=request.client.host if request.client else "unknown",
    )
