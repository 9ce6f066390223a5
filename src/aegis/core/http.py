"""HTTP plumbing every Aegis app mounts: request ids, metrics, body limits, one error body.

Error body, for every 4xx/5xx an Aegis service returns::

    {"error": {"code": "policy_not_found", "message": "...", "request_id": "..."}}

Unknown exceptions become a 500 with the request id and are logged with their traceback;
nothing of the exception is sent to the client.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aegis.core import metrics
from aegis.core.errors import AegisError
from aegis.core.logging import REQUEST_ID_HEADER, get_logger, request_id_var

log = get_logger(__name__)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": request_id_var.get()}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "body_too_large", f"request body exceeds {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a body without Content-Length passes the limit; it leaves the
    route (a handler counting its own outcomes sees it: status 413) and :class:`BodySizeLimit`
    answers 413. Not an :class:`AegisError`, so no error handler answers it first."""

    status_code = 413


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestContext:
    """Request id in and out, HTTP metrics, canary counts, and ``Cache-Control: no-store`` and
    ``X-Content-Type-Options: nosniff`` on every answer that sets neither — as plain ASGI
    middleware.

    The request id comes from ``X-Request-ID`` (when printable, at most 128 characters) or is
    minted; it is bound for the request's logs, forwarded by Aegis's own clients, and returned.
    Each request runs in its own task, so the context variable needs no reset.
    """

    def __init__(self, app: ASGIApp, service: str, rollout_track: str | None) -> None:
        self.app = app
        self.service = service
        self.rollout_track = rollout_track

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
        request_id_var.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append(REQUEST_ID_HEADER, rid)
                # API answers carry tokens and private data: never cached, never sniffed. (The
                # console's page and assets set their own, stricter headers.)
                headers.setdefault("Cache-Control", "no-store")
                headers.setdefault("X-Content-Type-Options", "nosniff")
            await send(message)

        try:
            if _control_characters(scope):
                refused = error_response(
                    400, "invalid_url", "the URL holds a control character (such as NUL)"
                )
                await refused(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route, method = _route_template(scope), scope.get("method", "GET")
        if method not in COUNTED_METHODS:  # the caller names it: one series each would be theirs
            method = "other"
        metrics.HTTP_REQUESTS.labels(self.service, route, method, str(status)).inc()
        metrics.HTTP_LATENCY.labels(self.service, route, method).observe(elapsed)
        if self.rollout_track and route not in UNCOUNTED_ROUTES:
            service_caller = bool(scope.get("state", {}).get(SERVICE_CALLER))
            outcome = canary_outcome(status, service_caller=service_caller)
            metrics.CANARY_REQUESTS.labels(self.rollout_track, outcome).inc()


SERVICE_CALLER = "aegis_service_caller"


def mark_service_caller(request: Request) -> None:
    """Note that the caller proved to be one of Aegis's own services (the engine's API key,
    the backend's service key): what :func:`canary_outcome` needs to know."""
    setattr(request.state, SERVICE_CALLER, True)


def canary_outcome(status: int, *, service_caller: bool = False) -> str:
    """What a request says about the release that answered it: ``error`` for a server fault
    (5xx) or for an invalid-request answer (422) to one of Aegis's own services,
    ``client_error`` for any other 4xx, ``ok`` otherwise.

    Only ``error`` can fail a rollout's analysis, which divides it by ``ok`` + ``error``: anyone
    can send a bad token, an unknown id or an invalid body to a canary, and that must neither
    roll back a healthy release nor hide its real errors (docs/metrics.md). A 422 to a service
    caller is different: Aegis's own components send what the previous release accepted, so a
    release that refuses it broke their contract (and a drill holding the API key can inject
    such errors: scripts/simulate_canary_load.py). 429 is a client error: Aegis answers it only
    from its own per-caller rate limits, so it measures the caller's rate, not the release; an
    engine that cannot keep up answers 503 ``queue_full``, which is an ``error``.
    """
    if status >= 500 or (status == 422 and service_caller):
        return "error"
    if status >= 400:
        return "client_error"
    return "ok"


_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def _control_characters(scope: Scope) -> bool:
    """Whether the path or the query holds a control character, raw or percent-encoded: no
    Aegis route takes one, and PostgreSQL cannot even compare text with a NUL in it."""
    path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    query = scope.get("query_string", b"")
    return any(_CONTROL.search(unquote_to_bytes(part)) for part in (path, query) if part)


# How pydantic names the forms of a union in an error's path: a class ("LogLine", "Page[int]"),
# a type ("str", "list[int]"), a constrained or wrapped one ("constrained-str",
# "function-after[check(), str]").
_UNION_FORM = re.compile(
    r"_*[A-Z]\w*(\[.*\])?|[a-z]+(-[a-z]+)*\[.*\]|[a-z]+(-[a-z]+)+"
    r"|str|int|float|bool|bytes|complex|decimal|uuid|url|datetime|date|time|timedelta|none|any"
)
_NOT_THIS_TYPE = frozenset({"none_required", "is_instance_of", "is_subclass_of"})


def _is_form(part: object) -> bool:
    return isinstance(part, str) and _UNION_FORM.fullmatch(part) is not None


def _union_forms(errors: Sequence[Any], prefix: tuple[Any, ...]) -> list[list[Any]] | None:
    """The errors under ``prefix`` per form of the union there, in the union's order; ``None``
    if what branches there is not a union (fields or keys that only look like form names)."""
    depth = len(prefix)
    forms: dict[Any, list[Any]] = {}
    given = []  # what the forms were given: the errors at the forms themselves carry it
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if len(loc) > depth and loc[:depth] == prefix:
            forms.setdefault(loc[depth], []).append(error)
            if len(loc) == depth + 1:
                if _names_a_field(error["type"]):
                    return None  # "x-api-key: Field required" is a header, not a form
                if "input" in error:
                    given.append(error["input"])
    if len(forms) < 2 or not all(_is_form(name) for name in forms):
        return None
    if any(value is not given[0] and value != given[0] for value in given[1:]):
        return None  # a union's forms are all given the same value; a dict's keys are not
    return list(forms.values())


def _names_a_field(error_type: str) -> bool:
    """Whether an error of this type ends its path with a field's or key's name."""
    return error_type == "extra_forbidden" or error_type.startswith(("missing", "unexpected_"))


def _not_its_type(form: list[Any], depth: int) -> bool:
    """Whether a form refused the value for its type (a string where it takes an object)."""
    return any(
        len(e["loc"]) == depth + 1 and (e["type"].endswith("_type") or e["type"] in _NOT_THIS_TYPE)
        for e in form
    )


def reported_error(errors: Sequence[Any]) -> Any:
    """The one error of a 422's message: the first, except where its path passes through a union
    (pydantic reports every form of it, each under its own name): there, the errors of the form
    that fits the value best (one that takes its type, with the fewest errors; the first on a
    tie), with the form's name taken out of the path."""
    loc = tuple(errors[0].get("loc", ()))
    for depth, part in enumerate(loc):
        forms = _union_forms(errors, loc[:depth]) if _is_form(part) else None
        if forms is not None:
            best = min(forms, key=lambda form: (_not_its_type(form, depth), len(form)))
            return reported_error(
                [{**e, "loc": (*e["loc"][:depth], *e["loc"][depth + 1 :])} for e in best]
            )
    return errors[0]


COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNCOUNTED_ROUTES = {"/metrics", "/health", "/api/v1/health", "/api/v1/health/ping", "unmatched"}


def install(
    app: FastAPI, *, service: str, max_body_bytes: int, rollout_track: str | None = None
) -> None:
    """Mount the shared middleware, error handlers and ``/metrics`` on ``app``.

    With ``rollout_track`` set (a canary or stable pod), every API request is also counted in
    ``aegis_canary_requests_total{track, outcome}`` for the rollout's analysis (outcomes: see
    :func:`canary_outcome`).
    """

    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    # Added last, so outermost: 413s and every other answer get a request id and metrics.
    app.add_middleware(RequestContext, service=service, rollout_track=rollout_track)

    @app.exception_handler(AegisError)
    async def aegis_error(_: Request, exc: AegisError) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        return error_response(exc.status_code, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = reported_error(errors) if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return error_response(422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(DataError)
    async def unstorable_value(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried (out of range, a NUL character):
        # the schemas stop the known cases at the edge; this keeps any other one a 4xx.
        log.warning("unstorable_value", path=request.url.path, error=type(exc.orig).__name__)
        return error_response(
            422, "invalid_value", "a value cannot be stored: out of range or not valid text"
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", path=request.url.path, exc_info=exc)
        # This answer leaves through Starlette's outermost middleware, past RequestContext:
        # it carries that middleware's headers itself.
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        rid = request_id_var.get()
        if rid:
            headers[REQUEST_ID_HEADER] = rid
        return error_response(
            500, "internal_error", "internal error; quote the request id", headers
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)
