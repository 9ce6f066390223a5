"""An incident's context for the engine: metric windows from Prometheus, log lines from the
executor.

Before the backend asks the engine about an incident, it asks Prometheus (``PROMETHEUS_URL``)
for the last ``INCIDENT_METRICS_LOOKBACK_S`` before the alert started, up to now, of every query
in ``INCIDENT_METRIC_QUERIES`` (by default the workload's CPU, memory and container restarts),
scoped to the alert's workload, plus the deployment's replica count and its latest rollout (its
newest ReplicaSet, when that was created in the window: kube-state-metrics). The windows go to
the engine in its columnar form, where its streaming detector scores them; the rollout becomes
a ``changes`` entry (the ``deploy_recent`` symptom, which can call for a rollback).

* **Scope.** ``$namespace`` is the alert's ``namespace``; ``$pods`` matches the alert's ``pod``,
  or the pods of its ``deployment`` (``<deployment>-<hash>-<hash>``); ``$deployment`` is the
  deployment. A value that is not a Kubernetes name (lower-case DNS-1123) is never put into a
  query: the incident then goes without metrics, and says so.
* **Fallback.** Prometheus down, slow or refusing a query never stops a prediction: the incident
  is scored with whatever came back, and its ``prediction_note`` says what was sent and why not
  more. With ``PROMETHEUS_URL`` unset, the engine scores the alert alone.
* **Bounds.** One call per query, each with ``PROMETHEUS_TIMEOUT_S``; after a connection failure
  or a timeout the remaining queries are skipped. An answer is read up to
  :data:`MAX_ANSWER_BYTES`, all of it within ``PROMETHEUS_TIMEOUT_S`` of its headers
  (:mod:`aegis.core.upstream`): a longer or slower one is refused like a failed query. At most
  :data:`MAX_SERIES_PER_QUERY` series per query, the engine's ``MAX_SERIES`` in all, and
  :data:`MAX_POINTS` points per series (the step grows for long windows).
* **Logs** (:func:`logs_of`): the last ``INCIDENT_LOG_LINES`` lines of the pod, or of the
  deployment's pods, over the same window, read by the executor (``POST /v1/logs``, signed): it
  is the one service that talks to Kubernetes, and only in the namespaces it is allowed. The
  same fallback holds: no lines, and the note says why.
"""

from __future__ import annotations

import json
import math
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from aegis.core import upstream
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.core.logging import get_logger
from aegis.engine.schemas import MAX_LINE_CHARS, MAX_SERIES
from aegis.executor.client import ExecutorClient
from aegis.executor.errors import ExecutorUnreachable
from aegis.executor.schemas import NAME_PATTERN, NAMESPACE_PATTERN, ExecutorLogsRequest

log = get_logger(__name__)
MAX_SERIES_PER_QUERY = 10
MAX_POINTS = 1000
# The most of one Prometheus answer that is read (aegis.core.upstream): more is refused like a
# failed query. A default query's answer is one series of at most MAX_POINTS points, some 40 KB;
# 16 MiB holds hundreds of such series, far more than the MAX_SERIES_PER_QUERY kept.
MAX_ANSWER_BYTES = 16 * upstream.MiB
# Kubernetes names: a namespace is a DNS-1123 label, a pod or deployment a DNS-1123 subdomain.
_NAMESPACE = re.compile(NAMESPACE_PATTERN)
_K8S_NAME = re.compile(NAME_PATTERN)
REPLICAS_QUERY = (
    'max(kube_deployment_spec_replicas{namespace="$namespace", deployment="$deployment"})'
)
# the creation time of each of the deployment's ReplicaSets (kube-state-metrics)
ROLLOUTS_QUERY = (
    'max by (replicaset) (kube_replicaset_created{namespace="$namespace"} * on (namespace, '
    'replicaset) group_left () kube_replicaset_owner{namespace="$namespace", '
    'owner_kind="Deployment", owner_name="$deployment"})'
)


@dataclass
class Context:
    """What the backend adds to an incident for the engine, and the note that says so."""

    series: list[dict[str, Any]] = field(default_factory=list)
    replicas: int | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    unreachable: bool = False  # Prometheus could not be reached or did not answer in time


@dataclass(frozen=True)
class Scope:
    namespace: str
    deployment: str | None
    pod: str | None

    @property
    def pods(self) -> str:
        """A regex of the workload's pods, written as inside a PromQL string: the pod, or the
        deployment's ``<deployment>-<hash>-<hash>``. "." is the only regex metacharacter a
        Kubernetes name can hold; in a PromQL string its backslash is written twice."""
        if self.pod:
            return self.pod.replace(".", "\\\\.")
        return str(self.deployment).replace(".", "\\\\.") + "-[a-z0-9]+-[a-z0-9]+"


NO_WORKLOAD = (
    "the alert names no workload (labels namespace, and pod or deployment, as Kubernetes names)"
)


def scope_of(labels: dict[str, str]) -> Scope | None:
    """The workload an alert names, or None when it names none (or not a valid name)."""
    namespace, pod, deployment = (labels.get(k, "") for k in ("namespace", "pod", "deployment"))
    if not _NAMESPACE.fullmatch(namespace) or not (pod or deployment):
        return None
    if any(value and not _K8S_NAME.fullmatch(value) for value in (pod, deployment)):
        return None
    return Scope(namespace, deployment or None, pod or None)


def window(settings: Settings, starts_at: datetime | None, now: float) -> tuple[float, float, int]:
    """(start, end, step): the lookback before the alert began, up to now."""
    if starts_at is not None and starts_at.tzinfo is None:  # SQLite gives naive UTC back
        starts_at = starts_at.replace(tzinfo=UTC)
    began = min(starts_at.timestamp(), now) if starts_at is not None else now
    start = began - settings.incident_metrics_lookback_s
    step = max(settings.incident_metrics_step_s, math.ceil((now - start) / MAX_POINTS))
    return start, now, step


class _Unreachable(Exception):
    """Prometheus cannot be reached or did not answer in time: skip the remaining queries."""


def _ask(http: httpx.Client, base: str, path: str, params: dict[str, Any]) -> Any:
    """The ``data`` of Prometheus's answer; ValueError when it refuses (or answers more than
    :data:`MAX_ANSWER_BYTES`, or slower than the client's read timeout), :class:`_Unreachable`
    when it cannot be reached or does not answer in time."""
    try:
        with http.stream("GET", base + path, params=params, headers=upstream.IDENTITY) as answer:
            status = answer.status_code
            content = upstream.read(answer, limit=MAX_ANSWER_BYTES)
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        raise _Unreachable(type(exc).__name__) from None
    except upstream.AnswerRefused as exc:
        raise ValueError(f"Prometheus {exc.message}") from None
    try:
        doc = json.loads(content)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        doc = {}
    if status != 200 or doc.get("status") != "success":
        error = str(doc.get("error") or f"HTTP {status}")[:200]
        raise ValueError(error)
    data = doc.get("data")
    return data if isinstance(data, dict) else {}


def _series_name(name: str, labels: dict[str, str], several: bool) -> str:
    if not several:
        return name
    shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{shown}}}"[:256]


def collect(
    settings: Settings,
    labels: dict[str, str],
    starts_at: datetime | None,
    *,
    now: float,
    http: httpx.Client | None = None,
) -> Context:
    """The metric windows, replica count and latest rollout of the workload ``labels`` name
    (never raises)."""
    if not settings.prometheus_url:
        return Context(note="no metric series: PROMETHEUS_URL is not set")
    scope = scope_of(labels)
    if scope is None:
        return Context(note=f"no metric series: {NO_WORKLOAD}")
    base = settings.prometheus_url.rstrip("/")
    owned = http is None
    client = http or httpx.Client(timeout=settings.prometheus_timeout_s)
    try:
        return _collect(settings, client, base, scope, window(settings, starts_at, now))
    finally:
        if owned:
            client.close()


def _collect(
    settings: Settings,
    http: httpx.Client,
    base: str,
    scope: Scope,
    window: tuple[float, float, int],
) -> Context:
    start, end, step = window
    values = {
        "namespace": scope.namespace,
        "pods": scope.pods,
        "deployment": scope.deployment or "",
    }
    context, problems = Context(), []
    try:
        for query in settings.incident_metric_queries:
            if scope.deployment is None and _uses_deployment(query.query):
                continue
            promql = string.Template(query.query).substitute(values)
            params = {"query": promql, "start": start, "end": end, "step": step}
            try:
                data = _ask(http, base, "/api/v1/query_range", params)
                room = MAX_SERIES - len(context.series)
                context.series += _matrix(query.name, query.family, data)[:room]
            except ValueError as exc:
                problems.append(f"{query.name}: {exc}")
        if scope.deployment is not None:
            context.replicas = _replicas(_instant(http, base, REPLICAS_QUERY, values, end))
            context.changes = _rollouts(_instant(http, base, ROLLOUTS_QUERY, values, end), start)
    except _Unreachable as exc:
        problems.append(f"Prometheus unreachable ({exc})")
        context.unreachable = True
    context.note = _note(context, problems)
    if problems:
        log.warning("incident_metrics_incomplete", problems=problems)
    return context


def _matrix(name: str, family: str | None, data: dict[str, Any]) -> list[dict[str, Any]]:
    """A range query's series in the engine's columnar form (ValueError: not a matrix)."""
    try:
        results = [r for r in data.get("result") or [] if r.get("values")]
        out = []
        for result in results[:MAX_SERIES_PER_QUERY]:
            points = result["values"][-MAX_POINTS:]
            series: dict[str, Any] = {
                "name": _series_name(name, result.get("metric") or {}, len(results) > 1),
                "timestamps": [float(t) for t, _ in points],
                "values": [str(v) for _, v in points],
            }
            if family:
                series["family"] = family
            out.append(series)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ValueError("Prometheus answered something that is not a matrix") from None
    return out


def _uses_deployment(query: str) -> bool:
    return "$deployment" in query or "${deployment}" in query


def _instant(
    http: httpx.Client, base: str, template: str, values: dict[str, str], at: float
) -> list[tuple[dict[str, str], float]]:
    """An instant query's finite samples with their labels ([] when Prometheus refuses it)."""
    query = string.Template(template).substitute(values)
    try:
        data = _ask(http, base, "/api/v1/query", {"query": query, "time": at})
    except ValueError:
        return []
    samples = []
    for result in data.get("result") or []:
        try:
            value = float(result["value"][1])
            labels = {str(k): str(v) for k, v in (result.get("metric") or {}).items()}
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            samples.append((labels, value))
    return samples


def _replicas(samples: list[tuple[dict[str, str], float]]) -> int | None:
    return next((int(v) for _, v in samples if 0 <= v <= 100_000), None)


def _rollouts(samples: list[tuple[dict[str, str], float]], since: float) -> list[dict[str, Any]]:
    """A rollout when the deployment's newest ReplicaSet was created in the window (and an
    older one exists to roll back to): the engine's ``changes`` entry."""
    created = sorted((v, labels.get("replicaset", "")) for labels, v in samples)
    if len(created) < 2 or created[-1][0] < since:
        return []
    (_, previous), (at, newest) = created[-2], created[-1]
    return [
        {
            "kind": "deploy",
            "at": at,
            "from_version": previous.rsplit("-", 1)[-1][:256] or None,
            "to_version": newest.rsplit("-", 1)[-1][:256] or None,
        }
    ]


def _note(context: Context, problems: list[str]) -> str:
    told = f"{len(context.series)} metric series from Prometheus"
    if context.replicas is not None:
        told += f", {context.replicas} replicas"
    if context.changes:
        told += ", a rollout at " + datetime.fromtimestamp(context.changes[0]["at"], UTC).strftime(
            "%H:%M:%S UTC"
        )
    if problems:
        told += "; not sent: " + "; ".join(problems)
    return told[:2000]


def logs_of(
    settings: Settings,
    labels: dict[str, str],
    starts_at: datetime | None,
    *,
    now: float,
    executor: ExecutorClient,
) -> tuple[list[dict[str, Any]], str]:
    """The workload's recent log lines, as the engine takes them, and a note (never raises
    except :class:`ExecutorUnreachable`, which the caller notes and remembers)."""
    if settings.incident_log_lines == 0:
        return [], "no log lines: INCIDENT_LOG_LINES is 0"
    scope = scope_of(labels)
    if scope is None:
        return [], f"no log lines: {NO_WORKLOAD}"
    start, end, _ = window(settings, starts_at, now)
    request = ExecutorLogsRequest(
        namespace=scope.namespace,
        pod=scope.pod,
        deployment=None if scope.pod else scope.deployment,
        since_s=max(1, min(math.ceil(end - start), 86400)),
        max_lines=settings.incident_log_lines,
        requested_by="ai-engine",
    )
    try:
        found = executor.logs(request)
    except ExecutorUnreachable:
        raise
    except AegisError as exc:
        log.warning("incident_logs_unavailable", error=exc.message)
        return [], f"no log lines: {exc.message}"[:500]
    lines: list[dict[str, Any]] = []
    for line in found.lines:
        entry: dict[str, Any] = {"message": line.message[:MAX_LINE_CHARS]}
        if line.timestamp is not None:
            entry["timestamp"] = line.timestamp
        lines.append(entry)
    pods = len(found.pods)
    return lines, f"{len(lines)} log lines from {pods} pod{'s' if pods != 1 else ''}"
