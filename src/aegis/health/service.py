"""Probe the backend's dependencies. Each probe is bounded by a short timeout."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text

from aegis import __version__
from aegis.core.context import AppContext
from aegis.health.schemas import HealthRead, Probe

PROBE_TIMEOUT_S = 2.0


def _database_up(ctx: AppContext) -> bool:
    try:
        with ctx.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


async def _redis_probe(ctx: AppContext) -> Probe:
    url = ctx.settings.redis_url
    if not url:
        return "disabled"
    import redis.asyncio as aioredis

    client = aioredis.from_url(
        url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S
    )
    try:
        return "up" if await client.ping() else "down"
    except Exception:
        return "down"
    finally:
        await client.aclose()


async def _engine_probe(ctx: AppContext) -> Probe:
    settings = ctx.settings
    if not settings.ai_engine_enabled:
        return "disabled"
    url = settings.effective_ai_engine_url.rstrip("/") + "/health"
    try:
        async with (
            httpx.AsyncClient(timeout=settings.ai_engine_timeout_s) as client,
            client.stream("GET", url) as response,
        ):
            # Its status is the answer: the body is never read, so no engine (or whatever
            # answers at its URL) can hold the probe with a body that does not end.
            return "up" if response.status_code == 200 else "down"
    except (httpx.HTTPError, httpx.InvalidURL):  # InvalidURL: a typo in AI_ENGINE_URL
        return "down"


async def backend_health(ctx: AppContext) -> tuple[HealthRead, bool]:
    """The health document and whether every *required* dependency is up."""
    database_ok, redis, engine = await asyncio.gather(
        asyncio.to_thread(_database_up, ctx), _redis_probe(ctx), _engine_probe(ctx)
    )
    database: Probe = "up" if database_ok else "down"
    required_ok = database == "up" and redis != "down"
    if ctx.settings.ai_engine_required and engine != "up":
        required_ok = False
    everything_up = required_ok and engine != "down"
    status = "ok" if everything_up else ("degraded" if required_ok else "down")
    return (
        HealthRead(
            status=status, database=database, redis=redis, ai_engine=engine, version=__version__
        ),
        required_ok,
    )
