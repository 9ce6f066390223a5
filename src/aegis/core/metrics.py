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
