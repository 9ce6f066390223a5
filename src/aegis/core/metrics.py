"""Prometheus metrics shared by every service.

Metric objects live in the process-wide default registry; each service process exposes it on
``/metrics``. Domain-specific metrics are declared here too so that one table
(``docs/metrics.md``) can be checked against one module.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "aegis_http_requests_total",
    "HTTP requests handled, by service, route template, method and status code.",
    ["service", "route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "aegis_http_request_duration_seconds",
    "HTTP request latency by service and route template.",
    ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SERVICE_INFO = Gauge(
    "aegis_service_up",
    "1 while the named service is serving.",
    ["service", "version"],
)


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


# --- security and supply chain ----------------------------------------------------------------
MODEL_SIGNATURE_ERRORS = Counter(
    "aegis_model_signature_errors",  # exposed as aegis_model_signature_errors_total
    "Model archives refused at load (AEGIS_MODEL_SIGNATURE_ERRORS), by reason.",
    ["reason"],
)
MODEL_LOADED = Gauge(
    "aegis_model_loaded",
    "1 for the model version the engine is serving, 0 otherwise.",
    ["name", "version"],
)
AUDIT_WRITE_ERRORS = Counter(
    "aegis_audit_write_errors",  # exposed as aegis_audit_write_errors_total
    "Audit writes that could not reach their backend (AEGIS_AUDIT_WRITE_ERRORS), by backend.",
    ["backend"],
)
AUDIT_JOURNAL_PENDING = Gauge(
    "aegis_audit_journal_pending",
    "Audit events waiting in the local fallback journal for the database to return.",
)
AUTH_FAILURES = Counter(
    "aegis_auth_failures",
    "Failed authentications, by reason.",
    ["reason"],
)
RATE_LIMIT_HITS = Counter(
    "aegis_rate_limit_hits",
    "Requests refused with 429, by limit (login, api, auth_failed).",
    ["limit"],
)
RATE_LIMIT_FALLBACK = Counter(
    "aegis_rate_limit_fallback",
    "Rate-limit decisions taken by the in-process limiter because Redis was unreachable.",
)

# --- decisions and actions -------------------------------------------------------------------
POLICY_DECISIONS = Counter(
    "aegis_policy_decisions",
    "Policy decisions, by effect (allow, deny, require_approval).",
    ["effect"],
)
EXECUTOR_ACTIONS = Counter(
    "aegis_executor_actions",
    "Actions the executor ran, by action type and outcome (succeeded, failed, rejected, replayed).",
    ["action", "outcome"],
)
SAFETY_FLAGS = Counter(
    "aegis_safety_flags",
    "Items flagged for safety review, by reason.",
    ["reason"],
)

# --- AI engine -------------------------------------------------------------------------------
INFERENCE_LATENCY = Histogram(
    "aegis_inference_latency_seconds",
    "Time from a request entering the batch queue to its result, by endpoint.",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
INFERENCE_REQUESTS = Counter(
    "aegis_inference_requests",
    "Inference requests, by endpoint and status code.",
    ["endpoint", "status"],
)
BATCH_SIZE = Histogram(
    "aegis_inference_batch_size",
    "Requests run together in one batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
BATCH_QUEUE_DEPTH = Gauge(
    "aegis_inference_batch_queue_depth",
    "Requests waiting in the engine's batch queue.",
)
BATCH_CPU = Counter(
    "aegis_inference_batch_cpu_seconds",
    "CPU time the batch worker spent running batches (scoring); the rest of the process's "
    "CPU (process_cpu_seconds_total) is HTTP, validation and the event loop.",
)

# --- incidents -------------------------------------------------------------------------------
ALERTS_RECEIVED = Counter(
    "aegis_alerts_received",
    "Alerts received from Alertmanager, by status (firing, resolved).",
    ["status"],
)
ALERTS_TRUNCATED = Counter(
    "aegis_alerts_truncated",
    "Alerts Alertmanager left out of its webhook payloads (truncatedAlerts: a group larger than "
    "the receiver's max_alerts); they never reach Aegis.",
)
CANARY_REQUESTS = Counter(
    "aegis_canary_requests",
    "Requests seen by a canary, by track (stable, canary) and outcome (ok; client_error: 4xx, "
    "the caller's fault; error: 5xx, the release's).",
    ["track", "outcome"],
)
