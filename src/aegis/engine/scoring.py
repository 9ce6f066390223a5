"""Score incidents: series anomalies, log evidence, symptoms, severity and recommendations.

:func:`score_batch` is what the batcher runs: the work that can be shared across a batch is done
once for all its incidents (every metric series of the batch through the detector in lockstep
groups; every log line of the batch through each mask regex in one pass), the rest per incident.
A failure is confined to its incident: each stage runs per item under its own guard, and when a
batch-wide stage fails it is redone item by item, so one bad incident never fails or stalls the
others. :func:`score_incident` scores one incident (same code, a batch of one).

Determinism: no clocks, no randomness, no state carried between calls; a prediction depends
only on the model, the incident and the outcome statistics, never on what else was in its batch.

Severity::

    score = 1 - (1 - w_alert * alert_prior) * (1 - w_metrics * max recent series score)
              * (1 - w_logs * log evidence score) * (1 - w_symptoms * max symptom weight)

where ``alert_prior`` comes from the alert's ``severity`` label and a symptom's weight is its
strength times the knowledge base's ``symptom_severity``; ``critical`` from ``critical_at``,
``warning`` from ``warning_at``, else ``info``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from aegis.core.errors import AegisError
from aegis.core.logging import get_logger
from aegis.engine import logs, series, symptoms
from aegis.engine.errors import ScoringFailed
from aegis.engine.model import EngineModel
from aegis.engine.recommender import Features, OutcomeStats, recommend
from aegis.engine.schemas import (
    DriverPoint,
    Incident,
    IncidentPrediction,
    ModelRef,
    SeriesResult,
    SeverityRead,
    epoch_seconds,
)

log = get_logger(__name__)
Result = IncidentPrediction | AegisError


@dataclass(frozen=True)
class PreparedModel:
    """A model with its regexes compiled and its detector's kernel support checked."""

    model: EngineModel
    miner: logs.LogMiner
    families: list[tuple[str, re.Pattern[str]]]
    alert_patterns: symptoms.AlertPatterns
    use_kernel: bool
    ref: ModelRef


def prepare(model: EngineModel, *, use_kernel: bool | None = None) -> PreparedModel:
    """Compile ``model`` for scoring (``use_kernel``: None checks the lockstep kernel)."""
    det = model.spec.detector
    if use_kernel is None:
        use_kernel = series.kernel_supported(det.name, det.params)
        if not use_kernel:
            log.warning("lockstep_kernel_off", detector=det.name, model=model.name)
    return PreparedModel(
        model=model,
        miner=logs.LogMiner.build(model.spec.logs, model.kb),
        families=series.family_patterns(model.kb),
        alert_patterns=symptoms.AlertPatterns.build(model.kb),
        use_kernel=use_kernel,
        ref=ModelRef(name=model.name, version=model.version, digest=model.digest),
    )


@dataclass(frozen=True, slots=True)
class Admitted:
    """An incident as it waits for its batch (:func:`admit`)."""

    incident: Incident  # as parsed, without its log lines
    logs: logs.RawLines


def admit(incident: Incident) -> Admitted:
    """Flatten ``incident``'s log lines to two lists as soon as it is parsed.

    A queued request then holds a few dozen objects instead of one model per log line, so the
    garbage collector, which walks every live container on its older generations' collections,
    has far less to walk while requests wait (under load, 64 requests in flight of 120 lines).
    """
    return Admitted(incident.model_copy(update={"logs": []}), logs.flatten(incident.logs))


@dataclass
class _Work:
    item: Incident | Admitted
    stats: OutcomeStats
    incident: Incident = field(init=False)
    lines: logs.Lines | None = None
    starts_at: float | None = None
    boundary: float | None = None
    reference: float | None = None
    series: list[SeriesResult] = field(default_factory=list)
    facts: list[symptoms.SeriesFacts] = field(default_factory=list)
    error: AegisError | None = None


def _guard(work: _Work, exc: Exception) -> None:
    if isinstance(exc, AegisError):
        work.error = exc
        return
    item = work.item
    incident_id = item.incident.id if isinstance(item, Admitted) else item.id
    log.error("scoring_failed", incident=incident_id, exc_info=exc)
    work.error = ScoringFailed("scoring this incident failed; quote the request id")


def _each(works: list[_Work], stage: Callable[[list[_Work]], None]) -> None:
    """Run a batch-wide stage; if it fails, run it item by item so only the culprit fails."""
    try:
        stage(works)
    except Exception:
        for w in works:
            try:
                stage([w])
            except Exception as exc:
                _guard(w, exc)


def _start(prepared: PreparedModel, w: _Work) -> None:
    admitted = w.item if isinstance(w.item, Admitted) else admit(w.item)
    w.incident = admitted.incident
    w.lines = logs.cut(admitted.logs, prepared.model.spec.logs)
    w.starts_at = epoch_seconds(w.incident.alert.starts_at)


def _series_stage(prepared: PreparedModel, works: list[_Work]) -> None:
    """Every series of ``works`` in a few arrays, one per run of series of similar length (so
    one long series pads no short one): clean, score, figures, drivers."""
    spec = prepared.model.spec
    det, windows = spec.detector, spec.windows
    every = [s for w in works for s in w.incident.series]
    owners = np.repeat(np.arange(len(works)), [len(w.incident.series) for w in works])
    parts = [
        (rows, series.build([every[r] for r in rows], prepared.families))
        for rows in series.runs([s.length for s in every])
    ]
    ends = np.full(len(works), -np.inf)
    for rows, batch in parts:
        if batch.values.shape[1]:
            row_end = np.nanmax(np.where(np.isnan(batch.times), -np.inf, batch.times), axis=1)
            np.maximum.at(ends, owners[rows], row_end)
    for i, w in enumerate(works):
        log_times = [t for t in (w.lines.times if w.lines else []) if t is not None]
        t_end = max([float(ends[i]), *log_times])
        if w.starts_at is not None:
            w.boundary, w.reference = w.starts_at - windows.alert_lead_s, w.starts_at
        elif t_end > -np.inf:
            w.boundary, w.reference = t_end - windows.recent_window_s, t_end
    done: dict[int, tuple[symptoms.SeriesFacts, SeriesResult]] = {}
    for rows, batch in parts:
        boundaries = np.array(
            [
                np.nan if works[o].boundary is None else works[o].boundary
                for o in owners[rows].tolist()
            ],
            dtype=np.float64,
        )
        starts = series.recent_starts(batch, boundaries, windows.recent_fraction)
        scores = series.score(
            batch, name=det.name, params=det.params, use_kernel=prepared.use_kernel
        )
        figs = series.figures(batch, scores, starts)
        picked = series.drivers(scores, batch.lengths, det.driver_threshold, det.max_drivers)
        for k, row in enumerate(rows):
            done[row] = (_facts(batch, k, figs), _series_result(batch, k, scores, figs, picked[k]))
    for row, owner in enumerate(owners.tolist()):
        facts, result = done[row]
        works[owner].facts.append(facts)
        works[owner].series.append(result)


def _facts(batch: series.SeriesBatch, row: int, figs: series.Figures) -> symptoms.SeriesFacts:
    return symptoms.SeriesFacts(
        name=batch.names[row],
        family=batch.families[row],
        recent_score=float(figs.recent_score[row]),
        change=_finite(figs.change[row]),
        growth=_finite(figs.growth[row]),
        rising_quarters=int(figs.rising_quarters[row]),
        increase=float(figs.increase[row]) if np.isfinite(figs.increase[row]) else 0.0,
    )


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _mask_stage(prepared: PreparedModel, works: list[_Work]) -> None:
    masked = logs.mask_batch([w.lines for w in works if w.lines is not None], prepared.miner)
    for w, lines in zip(works, masked, strict=True):
        w.lines = lines


def score_batch(
    prepared: PreparedModel, items: Sequence[tuple[Incident | Admitted, OutcomeStats]]
) -> list[Result]:
    """One prediction (or the error that stopped it) per item, in order."""
    works = [_Work(item, stats) for item, stats in items]
    for w in works:
        try:
            _start(prepared, w)
        except Exception as exc:
            _guard(w, exc)
    _each([w for w in works if w.error is None], lambda ws: _series_stage(prepared, ws))
    _each([w for w in works if w.error is None], lambda ws: _mask_stage(prepared, ws))
    results: list[Result] = []
    for w in works:
        if w.error is None:
            try:
                results.append(_finish(prepared, w))
                continue
            except Exception as exc:
                _guard(w, exc)
        assert w.error is not None
        results.append(w.error)
    return results


def score_incident(
    prepared: PreparedModel, incident: Incident, outcome_stats: OutcomeStats | None = None
) -> IncidentPrediction:
    """Score one incident (raises the error that stopped it)."""
    result = score_batch(prepared, [(incident, outcome_stats or {})])[0]
    if isinstance(result, AegisError):
        raise result
    return result


def _finish(prepared: PreparedModel, w: _Work) -> IncidentPrediction:
    spec, kb = prepared.model.spec, prepared.model.kb
    inc = w.incident
    found = symptoms.SymptomSet()
    symptoms.from_alert(found, inc, kb, prepared.alert_patterns)
    load_factor, best_series = None, 0.0
    for facts in w.facts:
        symptoms.from_series(found, facts, spec.symptoms)
        if facts.family in ("load", "cpu") and facts.change is not None and facts.change > 0.0:
            load_factor = max(load_factor or 0.0, 1.0 + facts.change)
        best_series = max(best_series, facts.recent_score)
    assert w.lines is not None
    mined = logs.mine(w.lines, prepared.miner, w.boundary, spec.windows.recent_fraction)
    for name, (strength, text) in mined.hints.items():
        found.add(name, strength, text)
    deploy = symptoms.deploy_of(inc, w.reference, spec.windows)
    if deploy is not None:
        found.add("deploy_recent", deploy.strength, deploy.text)
    kept = found.kept(spec.symptoms.min_strength)
    labels = inc.alert.labels
    features = Features(
        symptoms=kept.strengths,
        evidence=kept.evidence,
        namespace=labels.get("namespace"),
        deployment=labels.get("deployment"),
        pod=labels.get("pod"),
        replicas=inc.replicas,
        load_factor=load_factor,
        rollback_revision=deploy.revision if deploy else None,
    )
    kind, recommendations = recommend(features, w.stats, model=prepared.model)
    severity = _severity(prepared, inc, best_series, mined.summary.score, kept)
    return IncidentPrediction(
        incident_id=inc.id,
        incident_kind=kind,
        severity=severity,
        series=w.series,
        logs=mined.summary,
        symptoms=kept.read(),
        recommendations=recommendations,
        model=prepared.ref,
    )


def _series_result(
    batch: series.SeriesBatch,
    row: int,
    scores: series.FloatArray,
    figs: series.Figures,
    picked: series.IntArray,
) -> SeriesResult:
    order = batch.orders[row]
    drivers = []
    for idx in picked.tolist():
        t = float(batch.times[row, idx])
        drivers.append(
            DriverPoint(
                index=int(order[idx]) if order is not None else idx,
                timestamp=t if math.isfinite(t) else None,
                value=float(batch.values[row, idx]),
                score=round(float(scores[row, idx]), 6),
            )
        )
    change = _finite(figs.change[row])
    return SeriesResult(
        name=batch.names[row],
        family=batch.families[row],
        score=round(float(figs.score[row]), 6),
        recent_score=round(float(figs.recent_score[row]), 6),
        change=round(change, 6) if change is not None else None,
        points=int(batch.lengths[row]),
        missing_points=int(batch.missing[row]),
        reordered=batch.orders[row] is not None,
        drivers=drivers,
    )


def _severity(
    prepared: PreparedModel,
    inc: Incident,
    series_score: float,
    log_score: float,
    kept: symptoms.SymptomSet,
) -> SeverityRead:
    sev = prepared.model.spec.severity
    weights = prepared.model.kb.symptom_severity
    label = inc.alert.labels.get("severity", "").lower()
    alert_prior = sev.alert_priors.get(label, sev.default_alert_prior)
    symptom_name, symptom_w = "", 0.0
    for name, strength in sorted(kept.strengths.items()):
        weight = strength * weights.get(name, 0.0)  # type: ignore[call-overload]
        if weight > symptom_w:
            symptom_name, symptom_w = name, weight
    parts: list[tuple[float, str]] = [
        (sev.weight_alert * alert_prior, f"alert severity {label or 'unset'}"),
        (sev.weight_metrics * series_score, f"metric anomaly score {series_score:.2f}"),
        (sev.weight_logs * log_score, f"log evidence score {log_score:.2f}"),
        (sev.weight_symptoms * symptom_w, f"symptom {symptom_name or 'none'} ({symptom_w:.2f})"),
    ]
    quiet = 1.0
    for value, _ in parts:
        quiet *= 1.0 - min(max(value, 0.0), 1.0)
    score = round(1.0 - quiet, 6)
    level = (
        "critical" if score >= sev.critical_at else "warning" if score >= sev.warning_at else "info"
    )
    reasons = [text for value, text in sorted(parts, key=lambda p: -p[0]) if value > 0.0]
    return SeverityRead(level=level, score=score, reasons=reasons)
