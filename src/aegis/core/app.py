"""The common shape of the three deployable apps."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from aegis import __version__
from aegis.core import http, metrics
from aegis.core.context import AppContext

Hook = Callable[[AppContext], None]
Job = Callable[[AppContext], Coroutine[Any, Any, None]]


def base_app(
    ctx: AppContext,
    *,
    title: str,
    on_shutdown: list[Hook] | None = None,
    jobs: list[Job] | None = None,
) -> FastAPI:
    """A FastAPI app holding ``ctx``, with request ids, metrics, limits and the error body.

    ``jobs`` run in the background while the app serves and are cancelled at shutdown.
    """
    shutdown_hooks = list(on_shutdown or [])

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        metrics.SERVICE_INFO.labels(ctx.service, __version__).set(1)
        wanted = jobs if ctx.settings.background_jobs else []
        running = [asyncio.create_task(job(ctx)) for job in wanted or []]
        try:
            yield
        finally:
            for task in running:
                task.cancel()
            for task in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for hook in shutdown_hooks:
                hook(ctx)
            metrics.SERVICE_INFO.labels(ctx.service, __version__).set(0)
            ctx.close()

    # No /docs or /redoc: they load Swagger UI and ReDoc from a CDN, on the console's origin.
    # The schema itself stays at /openapi.json. No redirect for a trailing slash: Starlette's
    # builds an absolute URL from the Host header, a name the client (or a proxy) chooses.
    app = FastAPI(
        title=title,
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.ctx = ctx
    http.install(
        app,
        service=ctx.service,
        max_body_bytes=ctx.settings.max_body_bytes,
        rollout_track=ctx.settings.rollout_track,
    )
    return app
