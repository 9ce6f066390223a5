"""The backend API: the app factory mounts every domain's router. Nothing runs at import."""

from __future__ import annotations

from fastapi import FastAPI

from aegis.core.app import base_app
from aegis.core.config import Settings
from aegis.core.context import AppContext
from aegis.health.views import router as health_router


def create_app(settings: Settings) -> FastAPI:
    ctx = AppContext.build(settings, service="backend")
    app = base_app(ctx, title="Aegis backend")
    app.include_router(health_router)
    return app
