"""The AI engine app factory: ``/predict``, ``/infer``, ``/health`` and ``/metrics``.

* ``POST /predict`` ``{"incident": {...}, "outcome_stats": [...]}`` -> one prediction;
* ``POST /infer`` ``{"incidents": [...]}`` or ``{"incident": {...}}`` (+ ``outcome_stats``) ->
  ``{"predictions": [{"ok": true, "prediction": {...}} | {"ok": false, "error": {...}}]}``: a
  failing item does not fail the others;
* both need ``X-API-Key`` (``API_KEY``, or ``API_KEY_PREVIOUS`` during a rotation), compared in
  constant time; 401 ``invalid_api_key`` otherwise. With no key configured every call is refused;
* both go through the dynamic batcher (:mod:`aegis.engine.batching`): 503 ``queue_full`` with
  ``Retry-After`` when the queue is at ``BATCH_QUEUE_LIMIT``; 503 ``model_not_loaded`` while no
  model is served. A request whose client disconnects while it waits is taken out of the queue
  unscored (counted with status 499);
* ``GET /health`` is public and always 200 while the process serves (liveness); readiness is
  ``"model_loaded"``, with the reason when false;
* ``GET /metrics`` is public (Prometheus).

Nothing is loaded by this factory on its own: the caller passes a :class:`ModelHolder` that
already holds a verified model, or a ``loader`` (the registry's verify-and-load) that runs in the
background at start-up; until then the engine answers 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from aegis import __version__
from aegis.audit import jobs as audit_jobs
from aegis.audit.journal import AuditWriter
from aegis.audit.refusals import Refusal, RefusalAuditor
from aegis.core import http, metrics
from aegis.core.app import Job, base_app
from aegis.core.config import Settings
from aegis.core.context import AppContext
from aegis.core.errors import AegisError
from aegis.engine import parsing, schemas, scoring
from aegis.engine.errors import ClientGone, InvalidApiKey, ScoringFailed
from aegis.engine.recommender import OutcomeStats
from aegis.engine.state import EngineState, Item, Loader, ModelHolder

M = TypeVar("M", bound=BaseModel)
W = TypeVar("W")
JSON = "application/json"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def check_api_key(settings: Settings, supplied: str | None) -> None:
    """Accept the current or the previous key; compare in constant time; fail closed."""
    keys = [k.get_secret_value() for k in (settings.api_key, settings.api_key_previous) if k]
    candidate = _digest(supplied or "")
    matched = False
    for key in keys:  # every key is compared, so timing does not tell which one matched
        matched |= hmac.compare_digest(candidate, _digest(key))
    if not matched or not supplied:
        reason = "missing" if not supplied else "invalid"
        metrics.AUTH_FAILURES.labels(f"engine_api_key_{reason}").inc()
        raise InvalidApiKey(f"{reason} X-API-Key")


def _parse(parser: Callable[[bytes], M], body: bytes) -> M:
    try:
        return parser(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None


def _json(data: BaseModel, status: int = 200) -> Response:
    return Response(data.model_dump_json(), status_code=status, media_type=JSON)


def _item_error(result: object) -> schemas.ItemError:
    if isinstance(result, AegisError):
        return schemas.ItemError(code=result.code, message=result.message)
    return schemas.ItemError(code=ScoringFailed.code, message="inference failed")


def create_app(
    settings: Settings,
    *,
    holder: ModelHolder | None = None,
    loader: Loader | None = None,
    watch: Callable[[ModelHolder], Coroutine[Any, Any, None]] | None = None,
) -> FastAPI:
    """The engine app. ``holder``: a model holder to serve from; ``loader``: run at start-up;
    ``watch``: a background job given the holder (reloads when the registry changes)."""
    state = EngineState(settings, holder)
    ctx = AppContext.build(settings, service="engine")
    refusals = RefusalAuditor(AuditWriter(ctx.db, settings.audit_journal_path), service="engine")
    jobs: list[Job] = [lambda _ctx: audit_jobs.drain(refusals.writer)]
    if watch is not None:
        jobs.append(lambda _ctx: watch(state.holder))
    app = base_app(
        ctx,
        title="Aegis AI engine",
        on_shutdown=[lambda _: state.batcher.stop(), lambda _: _flush(refusals)],
        jobs=jobs,
    )
    app.state.engine = state
    served = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(inner: Any) -> AsyncIterator[None]:
        # Start-up work, not a periodic job: it runs whatever AEGIS_BACKGROUND_JOBS says. The
        # model loads in a worker thread so that /health answers (model_loaded: false) meanwhile.
        state.batcher.start()
        loading = (
            asyncio.create_task(asyncio.to_thread(state.holder.load, loader)) if loader else None
        )
        async with served(inner):
            yield
        if loading is not None and not loading.done():
            loading.cancel()

    app.router.lifespan_context = lifespan

    @app.post("/predict", response_model=schemas.IncidentPrediction)
    async def predict(request: Request) -> Response:
        async with _counted("predict") as outcome:
            body = await _authorised_body(state, refusals, request)
            item = _admit(_parse(parsing.parse_predict, body))
            started = time.perf_counter()
            result = await _while_connected(request, state.batcher.submit(item))
            metrics.INFERENCE_LATENCY.labels("predict").observe(time.perf_counter() - started)
            if isinstance(result, AegisError):
                raise result
            if not isinstance(result, schemas.IncidentPrediction):
                raise ScoringFailed("inference failed")
            outcome["status"] = 200
            return _json(result)

    @app.post("/infer", response_model=schemas.InferResponse)
    async def infer(request: Request) -> Response:
        async with _counted("infer") as outcome:
            body = await _authorised_body(state, refusals, request)
            items = _admit_all(_parse(parsing.parse_infer, body))
            response = await _infer(state, request, items)
            outcome["status"] = 200
            return _json(response)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return health_document(state)

    return app


def _flush(refusals: RefusalAuditor) -> None:
    refusals.flush()


@asynccontextmanager
async def _counted(endpoint: str) -> AsyncIterator[dict[str, int]]:
    """Count the request in ``aegis_inference_requests_total`` with the status it ends with."""
    outcome = {"status": 500}
    try:
        yield outcome
    except RequestValidationError:
        outcome["status"] = 422
        raise
    except http.BodyTooLarge as exc:  # a chunked body past MAX_BODY_BYTES: BodySizeLimit answers
        outcome["status"] = exc.status_code
        raise
    except AegisError as exc:
        outcome["status"] = exc.status_code
        raise
    finally:
        metrics.INFERENCE_REQUESTS.labels(endpoint, str(outcome["status"])).inc()


async def _authorised_body(state: EngineState, refusals: RefusalAuditor, request: Request) -> bytes:
    """The body, once the caller's key is good and a model is being served. A refused key is
    audited, folded per caller (:mod:`aegis.audit.refusals`)."""
    try:
        check_api_key(state.settings, request.headers.get("x-api-key"))
    except InvalidApiKey as exc:
        refusal = Refusal(
            "authentication.failed",
            exc.code,
            exc.message,
            ip=request.client.host if request.client else "unknown",
            resource=f"{request.method} {request.url.path}",
        )
        await asyncio.to_thread(refusals.refused, refusal)
        raise
    http.mark_service_caller(request)
    state.holder.require()
    try:
        return await request.body()
    except ClientDisconnect:  # the client left before sending its whole body
        raise ClientGone() from None


async def _while_connected(request: Request, work: Awaitable[W]) -> W:
    """``work``'s result, unless the client disconnects first: then ``work`` is cancelled, which
    takes the request's incidents out of the batch queue unscored, and :class:`ClientGone` is
    raised. (The server does not cancel a handler whose client left; only the ASGI ``receive``
    channel says so, with ``http.disconnect`` once the body has been read.)"""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
    if not task.done():
        raise ClientGone()
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _admit(req: schemas.PredictRequest) -> Item:
    """The parsed request as it will wait for its batch (the parsed form is dropped here)."""
    return scoring.admit(req.incident), schemas.stats_dict(req.outcome_stats)


def _admit_all(req: schemas.InferRequest) -> list[Item]:
    stats: OutcomeStats = schemas.stats_dict(req.outcome_stats)
    return [(scoring.admit(incident), stats) for incident in req.items]


async def _infer(state: EngineState, request: Request, items: list[Item]) -> schemas.InferResponse:
    limit = state.batcher.queue_limit
    if len(items) > limit:
        message = f"at most {limit} incidents per request (BATCH_QUEUE_LIMIT)"
        raise RequestValidationError([{"loc": ("incidents",), "msg": message, "type": "too_long"}])
    started = time.perf_counter()
    results = await _while_connected(request, state.batcher.submit_many(items))
    metrics.INFERENCE_LATENCY.labels("infer").observe(time.perf_counter() - started)
    answers = [
        schemas.InferItem(ok=True, prediction=r)
        if isinstance(r, schemas.IncidentPrediction)
        else schemas.InferItem(ok=False, error=_item_error(r))
        for r in results
    ]
    serving = state.holder.current
    ref = serving.prepared.ref if serving else None
    return schemas.InferResponse(predictions=answers, model=ref)


def health_document(state: EngineState) -> dict[str, Any]:
    """Liveness (always ``status: ok`` while serving) and readiness (``model_loaded``)."""
    serving = state.holder.current
    model = None
    if serving is not None:
        model = {
            "name": serving.meta.name,
            "version": serving.meta.version,
            "digest": serving.meta.digest,
            "signer": serving.meta.signer,
            "source": serving.meta.source,
            "loaded_at": serving.loaded_at,
            "lockstep_kernel": serving.prepared.use_kernel,
        }
    batcher = state.batcher
    return {
        "status": "ok",
        "service": "engine",
        "version": __version__,
        "model_loaded": serving is not None,
        "model": model,
        "reason": None if serving is not None else state.holder.not_loaded_reason,
        "last_error": state.holder.last_error,
        "batch": {
            "queue_depth": batcher.depth,
            "max_size": batcher.max_size,
            "max_latency_ms": batcher.max_latency_s * 1000.0,
            "queue_limit": batcher.queue_limit,
        },
    }
