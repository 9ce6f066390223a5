"""The AI engine app factory."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from aegis import __version__
from aegis.core.app import base_app
from aegis.core.config import Settings
from aegis.core.context import AppContext


def create_app(settings: Settings) -> FastAPI:
    ctx = AppContext.build(settings, service="engine")
    app = base_app(ctx, title="Aegis AI engine")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    return app
