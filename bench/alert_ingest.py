"""Alertmanager webhook ingestion throughput on PostgreSQL.

    .venv/bin/python -m bench.alert_ingest [--alerts 20000] [--concurrency 8] [--replicas 2]

Starts real backends (``aegis serve backend``) on one PostgreSQL database and posts
Alertmanager v4 payloads with groups of 1 and of 50 alerts (new fingerprints spread over 200
workloads), each deduplicated into incidents with its audit events. Reports alerts/s and webhook
p50/p95, with one backend process and with ``--replicas`` of them (default 2) sharing the load
as a Kubernetes Service spreads it over replicas: the senders take the replicas in turn.
Anchor: Event-Driven Ansible documents at most 150,000 events/min (2,500/s) per rulebook process
on 4 CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench._procs import free_port, percentile, pg_database, service

TOKEN = "bench-webhook-token-" + "w" * 24
ANCHOR = 2500.0


def _payload(group: int, run: str, start: int) -> dict[str, Any]:
    alerts = []
    for i in range(start, start + group):
        labels = {
            "alertname": "HighErrorRate",
            "namespace": "bench",
            "deployment": f"svc-{i % 200}",
            "severity": "warning",
            "pod": f"p{i}",
        }
        alerts.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "x"},
                "startsAt": "2026-11-23T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus",
                "fingerprint": f"{run}{i:010x}",
            }
        )
    return {
        "version": "4",
        "groupKey": "{}",
        "status": "firing",
        "receiver": "aegis",
        "alerts": alerts,
    }


async def _drive(
    urls: list[str], group: int, total: int, concurrency: int, progress: Progress
) -> tuple[float, list[float]]:
    run = uuid.uuid4().hex[:8]
    payloads = [_payload(group, run, i) for i in range(0, total, group)]
    task = progress.add_task(f"{len(urls)} x groups of {group}", total=len(payloads))
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    clients = [httpx.AsyncClient(base_url=url, timeout=60) for url in urls]
    try:

        async def worker(k: int) -> None:
            client = clients[k % len(clients)]
            while payloads:
                body = payloads.pop()
                started = time.perf_counter()
                response = await client.post(
                    "/api/v1/alerts/alertmanager", json=body, headers=headers
                )
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)
                progress.advance(task)

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    return total / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=2, help="backends in the second pass")
    args = parser.parse_args()
    table = Table(
        "backends",
        "alerts per webhook",
        "alerts",
        "alerts/s",
        "vs 2,500/s anchor",
        "webhook p50 ms",
        "webhook p95 ms",
    )
    for replicas in sorted({1, args.replicas}):
        with pg_database() as db_url, tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            env = {
                "AEGIS_DATA_DIR": str(Path(tmp)),
                "DATABASE_URL": db_url,
                "ALERT_WEBHOOK_TOKEN": TOKEN,
                "AI_ENGINE_ENABLED": "false",
                "AEGIS_BACKGROUND_JOBS": "false",
            }
            urls = [
                stack.enter_context(service("backend", env, free_port(), "/api/v1/health/ping"))
                for _ in range(replicas)
            ]
            progress = stack.enter_context(Progress())
            for group, total in ((1, max(1, args.alerts // 10)), (50, args.alerts)):
                rate, latencies = asyncio.run(
                    _drive(urls, group, total, args.concurrency, progress)
                )
                table.add_row(
                    str(replicas),
                    str(group),
                    str(total),
                    f"{rate:,.0f}",
                    f"{rate / ANCHOR:.2f}",
                    f"{percentile(latencies, 0.5) * 1000:.1f}",
                    f"{percentile(latencies, 0.95) * 1000:.1f}",
                )
    Console().print(table)


if __name__ == "__main__":
    main()
