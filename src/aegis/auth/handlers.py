"""Every authentication and authorisation failure is an audit event.

Recorded after the request's transaction has rolled back, through the AuditWriter (its own
transaction, journal fallback), so a refused request still leaves its trace.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from aegis.audit.journal import AuditWriter
from aegis.auth.errors import AuthenticationFailed
from aegis.core import metrics
from aegis.core.errors import AegisError, Forbidden, Unauthorized
from aegis.core.http import error_response

# What an audit record's resource holds: a longer path (anyone may send one) is cut to fit,
# so its refusal is still the 401 or 403 and still audited.
RESOURCE_CHARS = 512


def _resource(request: Request) -> str:
    return f"{request.method} {request.url.path}"[:RESOURCE_CHARS]


def install(app: FastAPI) -> None:
    async def audited_failure(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AegisError)
        ctx = request.app.state.ctx
        writer: AuditWriter = ctx.extras["audit_writer"]
        actor = getattr(request.state, "actor", None)
        attempted = getattr(request.state, "attempted_user", None)
        who = actor.name if actor is not None else (attempted or "anonymous")
        denied = isinstance(exc, Forbidden)
        if not denied and not isinstance(exc, AuthenticationFailed):  # a login counts its own
            metrics.AUTH_FAILURES.labels(exc.code).inc()
        await asyncio.to_thread(
            writer.record,
            category="auth",
            event_type="access.denied" if denied else "authentication.failed",
            actor=str(who),
            resource=_resource(request),
            outcome="denied",
            data={
                "ip": request.client.host if request.client else "unknown",
                "reason": exc.message,
                "code": exc.code,
                "username": attempted,
            },
        )
        headers = getattr(exc, "headers", None)
        return error_response(exc.status_code, exc.code, exc.message, headers)

    async def audited_refusal(request: Request, exc: Exception) -> JSONResponse:
        """Other refusals a domain marks ``audited = True`` (bad action requests, key reuse)."""
        assert isinstance(exc, AegisError)
        if getattr(exc, "audited", False):
            writer: AuditWriter = request.app.state.ctx.extras["audit_writer"]
            actor = getattr(request.state, "actor", None)
            await asyncio.to_thread(
                writer.record,
                category="action",
                event_type="request.refused",
                actor=actor.name if actor is not None else "anonymous",
                resource=_resource(request),
                outcome="refused",
                data={"code": exc.code, "reason": exc.message, "status": exc.status_code},
            )
        return error_response(exc.status_code, exc.code, exc.message, getattr(exc, "headers", None))

    app.add_exception_handler(Unauthorized, audited_failure)
    app.add_exception_handler(Forbidden, audited_failure)
    app.add_exception_handler(AegisError, audited_refusal)
