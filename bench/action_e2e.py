"""End-to-end action latency: POST /api/v1/actions → executor done, on the local backend.

    .venv/bin/python -m bench.action_e2e [--requests 1000] [--concurrency 4]

Starts a real backend and a real executor (``aegis serve``) on PostgreSQL, installs an allow
policy, then for each request measures the time from the POST to the moment GET shows it
``succeeded`` (polled every 2 ms). Baseline in the same run: the executor alone (one signed
``POST /v1/actions`` round trip), so the ratio shows what policy, audit, dispatch and the
approval machinery add.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aegis.database.core import Database
from aegis.executor.client import ExecutorClient
from aegis.executor.schemas import ExecutorActionRequest
from bench._procs import free_port, percentile, pg_database, service

SECRET = "bench-hmac-secret-" + "x" * 32
POLICY = {
    "id": "bench-allow",
    "effect": "allow",
    "subjects": ["role:operator"],
    "actions": ["restart_deployment"],
    "resources": {"namespaces": ["demo"], "names": ["*"]},
}


async def _one(client: httpx.AsyncClient, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    response = await client.post(
        "/api/v1/actions",
        headers=headers,
        json={
            "action": "restart_deployment",
            "namespace": "demo",
            "name": "web",
            "idempotency_key": uuid.uuid4().hex,
        },
    )
    action_id = response.json()["id"]
    while True:
        status = (await client.get(f"/api/v1/actions/{action_id}", headers=headers)).json()
        if status["status"] in {"succeeded", "failed"}:
            assert status["status"] == "succeeded", status
            return time.perf_counter() - started
        await asyncio.sleep(0.002)


async def _drive(
    url: str, headers: dict[str, str], total: int, concurrency: int, progress: Progress
) -> list[float]:
    task = progress.add_task("actions", total=total)
    latencies: list[float] = []
    queue = list(range(total))
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def worker() -> None:
            while queue:
                queue.pop()
                latencies.append(await _one(client, headers))
                progress.advance(task)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    console = Console()
    with pg_database() as db_url, tempfile.TemporaryDirectory() as tmp:
        executor_port, backend_port = free_port(), free_port()
        env = {
            "AEGIS_DATA_DIR": str(Path(tmp)),
            "DATABASE_URL": db_url,
            "EXECUTOR_HMAC_SECRET": SECRET,
            "EXECUTOR_URL": f"http://127.0.0.1:{executor_port}",
            "RATE_LIMIT_API_PER_MINUTE": "1000000",
            "AI_ENGINE_ENABLED": "false",
            "AUDIT_CHECKPOINT_INTERVAL_S": "3600",
        }
        with (
            service("executor", env, executor_port, "/health") as executor_url,
            service("backend", env, backend_port, "/api/v1/health/ping") as url,
        ):
            from aegis.auth import service as auth_service

            database = Database(db_url)
            with database.unit_of_work() as session:
                auth_service.create_user(
                    session=session,
                    username="bench-admin",
                    password="bench-password-123",
                    roles=["admin"],
                    actor="bench",
                )
                auth_service.create_user(
                    session=session,
                    username="bench-op",
                    password="bench-password-123",
                    roles=["operator"],
                    actor="bench",
                )
            database.dispose()
            login = httpx.post(
                f"{url}/api/v1/auth/login",
                json={"username": "bench-admin", "password": "bench-password-123"},
            ).json()
            admin = {"Authorization": f"Bearer {login['access_token']}"}
            httpx.post(f"{url}/api/v1/policy", json=POLICY, headers=admin).raise_for_status()
            login = httpx.post(
                f"{url}/api/v1/auth/login",
                json={"username": "bench-op", "password": "bench-password-123"},
            ).json()
            headers = {"Authorization": f"Bearer {login['access_token']}"}

            baseline = []
            with ExecutorClient(executor_url, SECRET) as client:
                for _ in range(200):
                    started = time.perf_counter()
                    client.submit(
                        ExecutorActionRequest(
                            action_id=uuid.uuid4().hex,
                            action="restart_deployment",
                            namespace="demo",
                            name="web",
                            idempotency_key=uuid.uuid4().hex,
                            requested_by="bench",
                        )
                    )
                    baseline.append(time.perf_counter() - started)
            with Progress() as progress:
                started = time.perf_counter()
                latencies = asyncio.run(
                    _drive(url, headers, args.requests, args.concurrency, progress)
                )
                elapsed = time.perf_counter() - started
    table = Table("path", "n", "p50 ms", "p95 ms", "throughput /s")
    table.add_row(
        "executor alone (signed POST)",
        str(len(baseline)),
        f"{percentile(baseline, 0.5) * 1000:.1f}",
        f"{percentile(baseline, 0.95) * 1000:.1f}",
        "",
    )
    table.add_row(
        "API → policy → audit → dispatch → executor → done",
        str(len(latencies)),
        f"{percentile(latencies, 0.5) * 1000:.1f}",
        f"{percentile(latencies, 0.95) * 1000:.1f}",
        f"{len(latencies) / elapsed:.0f}",
    )
    console.print(table)
    console.print(
        f"p50 ratio end-to-end / executor alone: "
        f"{percentile(latencies, 0.5) / percentile(baseline, 0.5):.1f}x"
    )


if __name__ == "__main__":
    main()
