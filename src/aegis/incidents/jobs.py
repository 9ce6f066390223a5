"""Ask the AI engine about new incidents and turn its top recommendation into an action request.

The engine is sent the alert, the workload's recent metric windows and latest rollout, read from
Prometheus, and its recent log lines, read through the executor (:mod:`aegis.incidents.telemetry`;
the incident's ``prediction_note`` says what was sent, and why not more).
Fallback mode: when the engine is switched off (``AI_ENGINE_ENABLED=false``), unreachable, or
answers with something that is not a prediction (an error, not JSON, more than
:data:`~aegis.incidents.engine_client.MAX_ANSWER_BYTES`, a body still arriving after
``AI_ENGINE_TIMEOUT_S``), incidents are kept without a prediction and say why
(``prediction_status``/``prediction_note``); nothing else stops working. Either outcome is audited
as it is stored, in the same transaction (``incident.prediction_stored``: the model and its top
recommendation; ``incident.prediction_unavailable``: why there is none, ``skipped`` included for an
incident that resolved before it was asked about). A stored recommendation
becomes an ordinary action request from ``principal:ai-engine``
(:mod:`aegis.incidents.recommendations`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from aegis.actions import service as actions_service
from aegis.audit import service as audit_service
from aegis.audit.schemas import AuditEventCreate
from aegis.core.config import Settings
from aegis.core.context import AppContext
from aegis.core.errors import AegisError
from aegis.core.logging import JobFailures, get_logger, request_id_var
from aegis.database.core import Database
from aegis.executor.client import ExecutorClient
from aegis.executor.errors import ExecutorUnreachable
from aegis.incidents import engine_client, recommendations, telemetry
from aegis.incidents.models import Alert, Incident
from aegis.safety import detect
from aegis.safety import service as safety

log = get_logger(__name__)
TICK_S = 1.0
PASS_SIZE = 20  # incidents per pass
SKIP_BATCH = 500  # resolved incidents marked (and audited) as not asked about, per pass
PREDICTION_LEASE_S = 300.0  # a claim older than this is taken to be a dead backend's
AUDITED_TEXT = 512  # the most of one text (a model's name, a reason) an audit record keeps


def predict_pending(
    database: Database,
    settings: Settings,
    http: httpx.Client | None = None,
    *,
    prometheus: httpx.Client | None = None,
    executor: ExecutorClient | None = None,
) -> int:
    """One pass over incidents waiting for a prediction. Returns how many were handled.

    Each incident is claimed before the engine is asked (:func:`_claim`), so when several
    backends run this job each incident is asked about once; a claim older than
    :data:`PREDICTION_LEASE_S` (its backend died) may be taken over.
    ``http``, ``prometheus`` and ``executor``: clients for the engine, Prometheus and the
    executor (default: new ones with the configured timeouts)."""
    with database.unit_of_work() as session:
        _skip_resolved(session)
        candidates = list(
            session.scalars(
                select(Incident.id)
                .where(Incident.status == "open", _claimable(_now()))
                .order_by(Incident.id)
                .limit(PASS_SIZE)
            )
        )
        stats = actions_service.outcome_stats(session=session)
    handled = 0
    with contextlib.ExitStack() as owned:  # clients made here serve the whole pass
        if candidates and settings.ai_engine_enabled:
            if http is None:
                http = owned.enter_context(httpx.Client(timeout=settings.ai_engine_timeout_s))
            if prometheus is None and settings.prometheus_url:
                prometheus = owned.enter_context(
                    httpx.Client(timeout=settings.prometheus_timeout_s)
                )
            if executor is None:
                try:
                    executor = owned.enter_context(
                        ExecutorClient.from_settings(
                            settings, timeout=settings.incident_logs_timeout_s
                        )
                    )
                except (AegisError, ValueError) as exc:  # no executor secret here: no log lines
                    log.warning("incident_logs_off", error=str(exc))
        clients = _Clients(engine=http, prometheus=prometheus, executor=executor)
        for incident_id in candidates:
            claimed = _claim(database, incident_id)
            if claimed is None:
                continue  # another backend took it between the query and the claim
            _predict(database, settings, claimed, stats=stats, clients=clients)
            handled += 1
    return handled


def _skip_resolved(session: Session) -> None:
    """Incidents that resolved before any backend asked about them (or whose asking backend
    died) are not asked about: they say so instead of waiting forever, audited like any other
    incident kept without a prediction. At most :data:`SKIP_BATCH` a pass (the rest the next),
    so a resolved storm does not hold the audit chain's lock for one long append."""
    now, note = _now(), "not asked: the incident resolved before the AI engine was asked"
    waiting = and_(Incident.status == "resolved", _claimable(now))
    batch = select(Incident.id).where(waiting).order_by(Incident.id).limit(SKIP_BATCH)
    # The conditions are repeated on the UPDATE: on PostgreSQL a backend that skips the same
    # rows at once waits for the first, re-reads them, and changes (and returns) none of them.
    skipped = session.scalars(
        update(Incident)
        .where(Incident.id.in_(batch.scalar_subquery()), waiting)
        .values(
            prediction_status="skipped",
            prediction_note=note,
            prediction_claim=None,
            prediction_claimed_at=None,
        )
        .returning(Incident.id)
    )
    events = [_unavailable(incident_id, "skipped", note) for incident_id in sorted(skipped)]
    audit_service.append(session=session, events=events)


def _now() -> datetime:
    return datetime.now(UTC)


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Waiting for a prediction, or claimed by a backend whose lease has run out."""
    stale = now - timedelta(seconds=PREDICTION_LEASE_S)
    return or_(
        Incident.prediction_status == "pending",
        and_(Incident.prediction_status == "predicting", Incident.prediction_claimed_at < stale),
    )


@dataclass(frozen=True)
class _Claimed:
    incident: Incident
    alerts: list[Alert]
    claim: str  # the token _store checks: only the claim's holder stores the prediction


def _claim(database: Database, incident_id: int) -> _Claimed | None:
    """Claim one incident with a conditional UPDATE: of backends claiming it at once, one
    changes the row; the others change nothing and skip it."""
    claim, now = str(uuid.uuid4()), _now()
    with database.unit_of_work() as session:
        changed = session.execute(
            update(Incident)
            .where(Incident.id == incident_id, Incident.status == "open", _claimable(now))
            .values(
                prediction_status="predicting", prediction_claim=claim, prediction_claimed_at=now
            )
        )
        if not changed.rowcount:  # type: ignore[attr-defined]
            return None
        incident = session.get_one(Incident, incident_id)
        alerts = list(
            session.scalars(
                select(Alert).where(Alert.incident_id == incident_id).order_by(Alert.id)
            )
        )
    return _Claimed(incident, alerts, claim)


@dataclass
class _Clients:
    """The clients of one pass, and which services did not answer during it: an incident storm
    during an outage must not wait out every timeout once per incident."""

    engine: httpx.Client | None
    prometheus: httpx.Client | None
    executor: ExecutorClient | None
    prometheus_down: str = ""
    executor_down: str = ""
    engine_down: str = ""


def _context(
    settings: Settings,
    labels: dict[str, str],
    starts_at: datetime | None,
    clients: _Clients,
) -> telemetry.Context:
    now = time.time()
    if clients.prometheus_down:
        context = telemetry.Context(note=f"no metric series: {clients.prometheus_down}")
    else:
        context = telemetry.collect(settings, labels, starts_at, now=now, http=clients.prometheus)
        if context.unreachable:
            clients.prometheus_down = "Prometheus unreachable earlier in this pass"
    if clients.executor is None:
        return context
    if clients.executor_down:
        logs_note = f"no log lines: {clients.executor_down}"
    else:
        try:
            context.logs, logs_note = telemetry.logs_of(
                settings, labels, starts_at, now=now, executor=clients.executor
            )
        except ExecutorUnreachable as exc:
            logs_note = f"no log lines: {exc.message}"
            clients.executor_down = "executor unreachable earlier in this pass"
    context.note = f"{context.note}; {logs_note}"
    return context


def _predict(
    database: Database,
    settings: Settings,
    claimed: _Claimed,
    *,
    stats: dict[Any, Any],
    clients: _Clients,
) -> None:
    """Ask the engine about one claimed incident (with its context) and store what it says."""
    incident, alerts = claimed.incident, claimed.alerts
    if not settings.ai_engine_enabled:
        _store(
            database,
            claimed,
            None,
            "disabled",
            "AI engine calls are off (AI_ENGINE_ENABLED=false)",
        )
        return
    # One id follows the incident across services: backend -> engine -> executor logs.
    request_id_var.set(f"incident-{incident.id}")
    starts_at = alerts[0].starts_at if alerts else None
    try:
        context = _context(settings, engine_client.labels(incident, alerts), starts_at, clients)
    except Exception as exc:  # the context is extra: a bug here must not hold the prediction
        log.error("incident_context_failed", incident_id=incident.id, exc_info=exc)
        context = telemetry.Context(note="no metric series or log lines: reading them failed")
    try:
        if clients.engine_down:
            raise AegisError(clients.engine_down)
        request = engine_client.engine_request(incident, alerts, stats, context)
        assert clients.engine is not None  # predict_pending opens one whenever the engine is on
        prediction = engine_client.ask_engine(settings, request, clients.engine)
    except (httpx.HTTPError, AegisError) as exc:
        note = exc.message if isinstance(exc, AegisError) else f"unreachable ({type(exc).__name__})"
        if isinstance(exc, httpx.TransportError):  # no answer at all: the rest would wait too
            clients.engine_down = "unreachable earlier in this pass"
        _store(
            database,
            claimed,
            None,
            "unavailable",
            f"stored without a prediction: AI engine {note}",
        )
        return
    # Secrets and personal data in what the engine quotes are redacted before anything stores
    # or shows them; what the prediction and the alerts showed is flagged for review.
    screened, findings = safety.screen(prediction, _alert_texts(alerts))
    if _store(database, claimed, screened, "ok", context.note, findings=findings):
        recommendations.recommend(database, settings, incident, screened)


def _alert_texts(alerts: list[Alert]) -> list[str]:
    return [text for a in alerts for part in (a.labels, a.annotations) for text in part.values()]


def _store(
    database: Database,
    claimed: _Claimed,
    prediction: dict[str, Any] | None,
    status: str,
    note: str,
    *,
    findings: detect.Findings | None = None,
) -> bool:
    """Store the outcome (and flag its ``findings``) and release the claim; False (nothing
    stored) when the claim was lost: this backend outlived its lease and another one asked
    again."""
    with database.unit_of_work() as session:
        incident = session.get(Incident, claimed.incident.id, with_for_update=True)
        if incident is None:
            return False
        if incident.prediction_claim != claimed.claim:
            log.warning("prediction_claim_lost", incident_id=incident.id)
            return False
        incident.prediction, incident.prediction_status = prediction, status
        incident.prediction_note = note
        incident.prediction_claim, incident.prediction_claimed_at = None, None
        if prediction is not None:
            incident.severity = recommendations.level(prediction) or incident.severity
        _audit_outcome(session, incident, prediction)
        if findings is not None:
            safety.flag_findings(
                session=session,
                subject_kind="incident",
                subject_id=str(incident.id),
                findings=findings,
                actor=recommendations.SAFETY_SCREEN,
            )
    return True


def _audit_outcome(session: Session, incident: Incident, prediction: dict[str, Any] | None) -> None:
    """Record, with the stored outcome, which model recommended what (the model, the severity,
    the top action and its confidence; never the log lines or metric series it read), or why
    the incident has no prediction."""
    if prediction is None:
        why = _unavailable(incident.id, incident.prediction_status, incident.prediction_note)
        audit_service.append(session=session, events=[why])
        return
    model = prediction.get("model") or {}
    ranked = prediction.get("recommendations") or []
    top = ranked[0] if ranked else {}
    audit_service.record_audit_event(
        session=session,
        category="system",
        event_type="incident.prediction_stored",
        actor=recommendations.ENGINE_ACTOR.name,
        resource=f"incident:{incident.id}",
        data={
            "incident_id": incident.id,
            "model_name": _text(model.get("name")),
            "model_version": _text(model.get("version")),
            "model_digest": _text(model.get("digest")),
            "severity": incident.severity,
            "action": _text(top["action"]) if top else None,
            "confidence": _number(top.get("confidence", 0.0)) if top else None,
        },
    )


def _unavailable(incident_id: int, status: str, note: str) -> AuditEventCreate:
    """The record of an incident kept without a prediction (``status``), and why (``note``)."""
    return AuditEventCreate(
        category="system",
        event_type="incident.prediction_unavailable",
        actor=recommendations.ENGINE_ACTOR.name,
        resource=f"incident:{incident_id}",
        outcome=status,
        data={"incident_id": incident_id, "status": status, "reason": note[:AUDITED_TEXT]},
    )


def _text(value: Any) -> str:
    """``value`` as audited: a text cut to :data:`AUDITED_TEXT`, anything else empty."""
    return value[:AUDITED_TEXT] if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    """``value`` as audited: a finite number, else None. A prediction is read leniently (a
    confidence of ``"0.9"`` or ``"NaN"`` passes), the audit chain takes JSON numbers only."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


async def run(ctx: AppContext) -> None:
    failures = JobFailures(log, "prediction_job_failed")
    while True:
        await asyncio.sleep(TICK_S)
        try:
            await asyncio.to_thread(predict_pending, ctx.db, ctx.settings)
        except Exception as exc:  # the job must outlive any one failure
            failures.failed(exc)
        else:
            failures.succeeded()
