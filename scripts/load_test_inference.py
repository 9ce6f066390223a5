#!/usr/bin/env python3
"""HTTP load generator for the AI engine: a target rate of /infer (or /predict) requests.

    scripts/load_test_inference.py --url http://127.0.0.1:8000 --qps 50 --duration 30 \\
        [--api-key K] [--concurrency 32] [--endpoint infer|predict] [--allow-remote]

Open loop: a ticker issues ``--qps`` requests per second for ``--duration`` seconds and at most
``--concurrency`` are in flight (httpx, keep-alive); a tick that finds every worker busy is
counted as *missed* rather than queued, so a slow server shows up as a lower achieved rate
instead of an ever-growing backlog. Bounded: at most ``qps * duration`` requests (and never
more than 1,000,000), each with a 10 s timeout. Loopback URLs only unless ``--allow-remote``.
The API key comes from ``--api-key`` or the ``API_KEY`` environment variable.

Bodies are synthetic incidents (``aegis.engine.synthetic``: six 240-point series, 120 log
lines). Prints achieved QPS, errors by status and p50/p95/p99 latency; exits 1 on any error
or missed tick.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import os
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

MAX_REQUESTS = 1_000_000
TIMEOUT_S = 10.0


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in {"http", "https"} and bool(parts.hostname) and parts.port != 0
    except ValueError:  # "http://[::1", a port out of range
        return False


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def percentile_ms(values: list[float], q: float) -> float | None:
    """The ``q`` quantile in milliseconds (None with no successful request)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000, 2)


def bodies(endpoint: str, count: int) -> list[bytes]:
    from aegis.engine import synthetic

    out = []
    for incident in synthetic.incidents(count, seed=11):
        doc = {"incident": incident} if endpoint == "predict" else {"incidents": [incident]}
        out.append(json.dumps(doc).encode())
    return out


async def run(args: argparse.Namespace, console: Console) -> tuple[dict[str, object], int]:
    total = min(int(args.qps * args.duration), MAX_REQUESTS)
    payloads = bodies(args.endpoint, 48)
    headers = {"content-type": "application/json"}
    if args.api_key:
        headers["x-api-key"] = args.api_key
    path = f"/{args.endpoint}"
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    free = asyncio.Semaphore(args.concurrency)
    missed = 0
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, timeout=TIMEOUT_S, limits=limits
    ) as client:

        async def one(i: int) -> None:
            started = time.perf_counter()
            try:
                response = await client.post(path, content=payloads[i % len(payloads)])
                statuses[str(response.status_code)] += 1
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            finally:
                free.release()

        tasks: set[asyncio.Task[None]] = set()
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            bar = progress.add_task(f"POST {path} at {args.qps:g}/s", total=total)
            start = time.perf_counter()
            for i in range(total):
                delay = start + i / args.qps - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if free.locked():
                    missed += 1
                else:
                    await free.acquire()
                    task = asyncio.create_task(one(i))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                progress.update(bar, completed=i + 1)
            if tasks:
                await asyncio.wait(tasks, timeout=TIMEOUT_S + 1)
            elapsed = time.perf_counter() - start
    ok = statuses.get("200", 0)
    errors = sum(statuses.values()) - ok
    report: dict[str, object] = {
        "url": args.url + path,
        "target_qps": args.qps,
        "achieved_qps": round(ok / elapsed, 2) if elapsed else 0.0,
        "sent": sum(statuses.values()),
        "ok": ok,
        "errors": errors,
        "missed": missed,
        "statuses": dict(statuses),
        "p50_ms": percentile_ms(latencies, 0.50),
        "p95_ms": percentile_ms(latencies, 0.95),
        "p99_ms": percentile_ms(latencies, 0.99),
    }
    return report, errors + missed


def check_args(args: argparse.Namespace) -> str | None:
    """Why these arguments cannot make a load test, or None."""
    if not (math.isfinite(args.qps) and math.isfinite(args.duration)):
        return "--qps and --duration must be finite numbers"
    if args.qps <= 0 or args.duration <= 0 or args.concurrency < 1:
        return "--qps and --duration must be > 0, --concurrency >= 1"
    if not math.isfinite(args.qps * args.duration):
        return "--qps times --duration must be a finite number of requests"
    if int(args.qps * args.duration) < 1:
        return f"--qps {args.qps:g} for --duration {args.duration:g} s sends no request"
    return check_url(args.url, allow_remote=args.allow_remote)


def check_url(url: str, *, allow_remote: bool) -> str | None:
    if not is_http_url(url):
        return f"--url must be an http(s) URL with a host, e.g. http://127.0.0.1:8000, not {url!r}"
    if not is_loopback(url) and not allow_remote:
        return f"{url} is not a loopback address; pass --allow-remote to load it"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load-test the AI engine's /infer or /predict.")
    parser.add_argument("--url", required=True, help="engine base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--qps", type=float, required=True, help="target requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds to run")
    parser.add_argument("--api-key", default=os.environ.get("API_KEY"), help="X-API-Key")
    parser.add_argument("--concurrency", type=int, default=32, help="most requests in flight")
    parser.add_argument("--endpoint", choices=("infer", "predict"), default="infer")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback URL")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)  # one line: Rich would wrap it at 80 columns
        return 2
    report, problems = asyncio.run(run(args, console))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        table = Table(title=f"load test {report['url']}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in report.items():
            if key != "url":
                table.add_row(key, str(value))
        Console().print(table)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
