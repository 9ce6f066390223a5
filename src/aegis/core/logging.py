"""JSON logs with the request id bound to every line.

The request id arrives in the ``X-Request-ID`` header (or is minted) and travels
backend -> engine -> executor in the same header, so one incident's path can be followed across
services by grepping one id.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

import structlog

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: ContextVar[str | None] = ContextVar("aegis_request_id", default=None)

_SECRET_KEYS = ("password", "secret", "token", "api_key", "authorization", "key")


def _add_request_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    rid = request_id_var.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    return event


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: a field whose name says it is secret is never written out."""
    for key in list(event):
        lowered = key.lower()
        if any(marker in lowered for marker in _SECRET_KEYS) and key not in {"key_id"}:
            event[key] = "***"
    return event


def configure_logging(
    *, level: str = "INFO", json_output: bool = True, service: str = "aegis"
) -> None:
    """Route stdlib and structlog output through one JSON (or console) renderer on stderr."""
    # The console's tracebacks are plain: structlog's default (rich, when installed) prints every
    # frame's local variables, and a login that fails on the database holds the password in one.
    # JSON lines carry the traceback as text (format_exc_info, plain, no locals either): the
    # renderer alone would write only the exception's repr.
    renderers: list[Any] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if json_output
        else [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
        _redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    structlog.contextvars.bind_contextvars(service=service)
    # uvicorn's access log duplicates our request log line.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
