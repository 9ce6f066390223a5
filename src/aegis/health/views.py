from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from aegis.core.context import AppContext, get_context
from aegis.health import service
from aegis.health.schemas import PingRead

router = APIRouter(prefix="/api/v1/health", tags=["health"])


@router.get("", response_model=None)
async def health(ctx: Annotated[AppContext, Depends(get_context)]) -> JSONResponse:
    body, ok = await service.backend_health(ctx)
    return JSONResponse(body.model_dump(by_alias=True), status_code=200 if ok else 503)


@router.get("/ping", response_model=PingRead)
async def ping(ctx: Annotated[AppContext, Depends(get_context)]) -> PingRead:
    return PingRead(status="ok", uptime=round(time.monotonic() - ctx.started_at, 3))
