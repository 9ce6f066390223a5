"""Alertmanager-shaped webhook payloads (version 4), as Alertmanager sends them."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

WEBHOOK_PATH = "/api/v1/alerts/alertmanager"


def alert(
    name: str = "HighErrorRate",
    *,
    status: str = "firing",
    namespace: str = "staging",
    deployment: str = "web",
    severity: str = "warning",
    **labels: str,
) -> dict[str, Any]:
    all_labels = {
        "alertname": name,
        "namespace": namespace,
        "deployment": deployment,
        "severity": severity,
        **labels,
    }
    fingerprint = hashlib.sha256(repr(sorted(all_labels.items())).encode()).hexdigest()[:16]
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{name} on {namespace}/{deployment}"},
        "startsAt": "2026-11-23T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-23T10:05:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": '{}:{alertname="x"}',
        "status": status,
        "receiver": "aegis",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager",
        "truncatedAlerts": 0,
        "alerts": list(alerts),
    }


def deliver(to: httpx.Client | str, token: str, *alerts: dict[str, Any]) -> httpx.Response:
    """POST ``alerts`` to Aegis's Alertmanager webhook as Alertmanager does (bearer ``token``):
    ``to`` is a client (a TestClient too) or a backend's base URL."""
    headers = {"Authorization": f"Bearer {token}"}
    if isinstance(to, httpx.Client):
        return to.post(WEBHOOK_PATH, json=payload(*alerts), headers=headers)
    return httpx.post(f"{to}{WEBHOOK_PATH}", json=payload(*alerts), headers=headers, timeout=30)
