"""The backend API: the app factory mounts every domain's router. Nothing runs at import."""

from __future__ import annotations

from fastapi import FastAPI

from aegis.actions import jobs as actions_jobs
from aegis.actions.views import router as actions_router
from aegis.audit import jobs as audit_jobs
from aegis.audit.journal import AuditWriter
from aegis.audit.views import router as audit_router
from aegis.auth import handlers as auth_handlers
from aegis.auth.oidc import OIDCValidator
from aegis.auth.ratelimit import build_limiter
from aegis.auth.views import router as auth_router
from aegis.core.app import base_app
from aegis.core.config import Settings
from aegis.core.context import AppContext
from aegis.health.views import router as health_router
from aegis.incidents import jobs as incidents_jobs
from aegis.incidents.views import router as incidents_router
from aegis.policy.views import router as policy_router
from aegis.registry.views import router as registry_router
from aegis.safety.views import router as safety_router
from aegis.web.views import router as web_router

# Routes anyone may call. Everything else must declare require_roles (tests enforce it).
PUBLIC_ROUTES = {
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/health/ping"),
    ("GET", "/metrics"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("GET", "/"),
    ("GET", "/console"),
    ("GET", "/static/{name}"),
}


def create_app(settings: Settings) -> FastAPI:
    ctx = AppContext.build(settings, service="backend")
    ctx.extras["limiter"] = build_limiter(settings.redis_url)
    ctx.extras["oidc"] = OIDCValidator.from_settings(settings)
    ctx.extras["audit_writer"] = AuditWriter(ctx.db, settings.audit_journal_path)
    app = base_app(
        ctx, title="Aegis backend", jobs=[audit_jobs.run, actions_jobs.run, incidents_jobs.run]
    )
    auth_handlers.install(app)
    routers = (
        health_router,
        auth_router,
        audit_router,
        incidents_router,
        policy_router,
        actions_router,
        registry_router,
        safety_router,
    )
    for router in routers:
        app.include_router(router)
    app.include_router(web_router)
    return app
