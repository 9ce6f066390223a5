"""JSON logs with the request id bound to every line.

The request id arrives in the ``X-Request-ID`` header (or is minted) and travels
backend -> engine -> executor in the same header, so one incident's path can be followed across
services by grepping one id.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import structlog

REQUEST_ID_HEADER = "X-Request-ID"
request_id_var: ContextVar[str | None] = ContextVar("aegis_request_id", default=None)

_SECRET_KEYS = ("password", "secret", "token", "api_key", "authorization", "key")
_NOT_SECRET = frozenset({"key_id"})
# structlog's own fields, read by the processors after this one (exc_info as the tuple it is).
_LOGGING_FIELDS = frozenset({"exc_info", "stack_info", "_record", "_from_structlog"})
# How much of a field's nested dicts and lists is checked for secret names: this many levels
# below the field, this many values per line. What lies beyond is replaced by a note.
_MAX_DEPTH = 8
_MAX_VALUES = 2_000
_TOO_DEEP = "<nested too deep to check for secrets>"
_TOO_MANY = "<more values than are checked for secrets>"


def _add_request_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    rid = request_id_var.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    return event


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return name not in _NOT_SECRET and any(marker in lowered for marker in _SECRET_KEYS)


def _key_text(key: object) -> str:
    """A field name as JSON writes it (which refuses a tuple key, say); never raises."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return "null" if key is None else str(key).lower()
    try:
        return str(key)
    except Exception:  # a key whose __str__ fails: the line is still written
        return f"<{type(key).__name__}>"


def _redacted(value: Any, depth: int, budget: list[int]) -> Any:
    """``value`` with every field whose name says it is secret masked, in copies (the caller's
    dicts and lists are never changed); past :data:`_MAX_DEPTH` levels or :data:`_MAX_VALUES`
    values a container is replaced by a note, so a deep, cyclic or huge one is neither checked
    for ever nor written unchecked."""
    if not isinstance(value, (Mapping, list, tuple)):
        return value
    if depth >= _MAX_DEPTH:
        return _TOO_DEEP
    try:
        items = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
    except Exception:  # a mapping whose items() fails
        return f"<unreadable {type(value).__name__}>"
    out: dict[str, Any] = {}
    for key, item in items:
        if budget[0] <= 0:
            out["..."] = _TOO_MANY
            break
        budget[0] -= 1
        name = _key_text(key)
        if isinstance(value, Mapping) and _is_secret(name):
            out[name] = "***"
        else:
            out[name] = _redacted(item, depth + 1, budget)
    if isinstance(value, Mapping):
        return out
    return [*out.values()] if isinstance(value, list) else tuple(out.values())


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: a field whose name says it is secret is never written out, at the
    top of the line or nested in a field's dicts and lists (``headers={"Authorization": ...}``)."""
    budget = [_MAX_VALUES]
    for key in list(event):
        if key in _LOGGING_FIELDS:
            continue
        if _is_secret(key):
            event[key] = "***"
        else:
            event[key] = _redacted(event[key], 0, budget)
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


class JobFailures:
    """How a background job that outlives its failures logs them.

    The first failure of a run of them is an error with its traceback (plain text, no local
    variables); a repeat of the same failure (type and message) is a warning by name only, with
    ``repeated: true``; a success, or a different failure, starts over. A database down for an
    hour then writes one traceback per job, not one every pass.
    """

    def __init__(self, logger: Any, event: str) -> None:
        self._log, self._event = logger, event
        self._last: tuple[str, str] | None = None

    def failed(self, exc: BaseException) -> None:
        key = (type(exc).__name__, str(exc)[:500])
        if key == self._last:
            self._log.warning(self._event, error=key[0], repeated=True)
        else:
            self._log.error(self._event, error=key[0], exc_info=exc)
            self._last = key

    def succeeded(self) -> None:
        self._last = None
