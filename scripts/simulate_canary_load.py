#!/usr/bin/env python3
"""Canary load: real HTTP traffic against the AI engine, with a share of deliberately bad requests.

Runbooks 000 step G and 001 step 9::

    python3 scripts/simulate_canary_load.py --url <canary-url> --qps 20 --duration 120 \\
        --error-rate 0.05

``--url`` is the engine's base URL or its ``/infer`` (or ``/predict``) URL; the API key comes
from ``--api-key`` or the ``API_KEY`` environment variable (the engine refuses every call
without it). Requests leave on a fixed schedule (open loop: ``--qps`` a second for
``--duration`` seconds, at most ``--max-requests``), each with ``--timeout``; at most
``--concurrency`` are in flight, so a slow engine shows up as a lower achieved rate rather than
as unbounded queueing here. The run always ends: sending stops at the deadline and requests
still in flight get at most ``--timeout`` more before they are cancelled.

Every ``1/error-rate``-th request (spread evenly, exactly ``floor(n * rate)`` of ``n``) carries a
body that fails the engine's validation; the engine answers it with an error status (422 once a
model is loaded) and counts it in its request metrics. Like every request here it carries the
API key, so the canary counts the 422 as its own error (``outcome="error"``: the release refused
a request from a caller holding the key, as a release that broke the backend's contract would),
and above 1% the canary analysis and AegisCanaryErrorRateHigh roll the canary back: the
runbooks' injected-errors drill (docs/metrics.md, "Canary outcomes"). Here a request counts as
an error when the answer is not 2xx, when any item of an ``/infer`` answer is ``"ok": false``,
or when no answer came (timeout, refused connection). An engine that serves no model answers
503 to everything: that is reported as a 100% error rate, not a crash.

At the end it prints the achieved request rate, the error rate, the answers by status and the
latency percentiles (p50/p95/p99, over every request that got an answer); ``--json`` prints the
same as one JSON object. Exit status: 0 when the run completed and at least one request got an
HTTP answer; 1 when none did (nothing listens at the URL); 2 for bad arguments.
Needs only httpx and rich (the project's locked dependencies).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

MAX_REQUESTS_CAP = 1_000_000
MAX_CONCURRENCY = 1_000
PAYLOAD_VARIANTS = 16
POINTS = 60


@dataclass(frozen=True)
class Config:
    url: str
    api_key: str
    qps: float
    duration_s: float
    error_rate: float
    max_requests: int
    concurrency: int
    timeout_s: float
    batch: int = 1
    seed: int = 0
    progress: bool = True


@dataclass
class Result:
    index: int
    injected: bool
    outcome: str  # "ok" or "error"
    status: str  # HTTP status code, "item_error" (200 with a failed item), "timeout", "transport"
    latency_s: float | None  # None when no HTTP answer came


@dataclass
class Summary:
    url: str
    planned: int
    sent: int
    completed: int
    ok: int
    errors: int
    error_rate: float
    injected_bad: int
    elapsed_s: float
    achieved_qps: float
    by_status: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    answered: int = 0


# --- pure helpers (unit-tested) ----------------------------------------------------------------


def normalise_url(url: str) -> str:
    """The endpoint to call: ``/infer`` or ``/predict`` as given, else ``<url>/infer``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"--url must be an http(s) URL, got {url!r}")
    path = parts.path.rstrip("/")
    if not (path.endswith("/infer") or path.endswith("/predict")):
        path = f"{path}/infer"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def is_injected(index: int, rate: float) -> bool:
    """Whether request ``index`` (0-based) is a bad one: exactly floor(n * rate) of the first n."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    return math.floor((index + 1) * rate + 1e-9) > math.floor(index * rate + 1e-9)


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def planned_requests(qps: float, duration_s: float, max_requests: int) -> int:
    wanted = qps * duration_s  # may overflow to inf: max_requests bounds it
    if wanted >= max_requests:
        return max_requests
    return max(0, math.ceil(wanted - 1e-9))


def summarise(
    url: str, planned: int, results: list[Result], sent: int, elapsed_s: float
) -> Summary:
    completed = len(results)
    ok = sum(1 for r in results if r.outcome == "ok")
    errors = completed - ok
    latencies = sorted(r.latency_s for r in results if r.latency_s is not None)
    by_status = Counter(r.status for r in results)
    if sent > completed:
        by_status["cancelled"] += sent - completed  # still in flight when the run ended
        errors += sent - completed
    counted = max(sent, completed)
    return Summary(
        url=url,
        planned=planned,
        sent=sent,
        completed=completed,
        ok=ok,
        errors=errors,
        error_rate=round(errors / counted, 6) if counted else 0.0,
        injected_bad=sum(1 for r in results if r.injected),
        elapsed_s=round(elapsed_s, 3),
        achieved_qps=round(sent / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        by_status=dict(sorted(by_status.items())),
        latency_ms={
            name: (None if value is None else round(value * 1000.0, 3))
            for name, value in (
                ("p50", percentile(latencies, 50)),
                ("p95", percentile(latencies, 95)),
                ("p99", percentile(latencies, 99)),
                ("max", latencies[-1] if latencies else None),
            )
        },
        answered=len(latencies),
    )


# --- request bodies ------------------------------------------------------------------------------


def _incident(rng: random.Random, n: int) -> dict[str, Any]:
    start = 1_795_428_000.0
    base = rng.uniform(0.05, 0.2)
    points = []
    for i in range(POINTS):
        spike = 4.0 if i >= POINTS * 3 // 4 else 1.0
        points.append([start + 15.0 * i, round(base * spike * rng.uniform(0.9, 1.1), 6)])
    return {
        "id": f"canary-load-{n}",
        "alert": {
            "labels": {
                "alertname": "HighLatency",
                "namespace": "staging",
                "deployment": "checkout",
                "severity": "warning",
            },
            "status": "firing",
        },
        "series": [{"name": "http_request_duration_seconds_p99", "points": points}],
        "logs": [
            f"WARN upstream timeout after {rng.randint(900, 2000)}ms calling payments",
            "INFO request served in 12ms",
        ],
        "replicas": 3,
    }


def good_bodies(endpoint: str, seed: int, batch: int) -> list[bytes]:
    rng = random.Random(seed)  # noqa: S311 - synthetic load, not security
    bodies = []
    for v in range(PAYLOAD_VARIANTS):
        if endpoint.endswith("/predict"):
            doc: dict[str, Any] = {"incident": _incident(rng, v)}
        else:
            doc = {"incidents": [_incident(rng, v * batch + k) for k in range(batch)]}
        bodies.append(json.dumps(doc).encode())
    return bodies


def bad_body(endpoint: str) -> bytes:
    """A body the engine rejects: no incident for /predict, an empty list for /infer."""
    return b"{}" if endpoint.endswith("/predict") else b'{"incidents": []}'


# --- the run -------------------------------------------------------------------------------------


def _classify(response: httpx.Response, endpoint: str) -> tuple[str, str]:
    if not response.is_success:
        return "error", str(response.status_code)
    if endpoint.endswith("/infer"):
        try:
            items = response.json().get("predictions", [])
        except (ValueError, AttributeError):
            return "error", "bad_response"
        if any(not item.get("ok", False) for item in items):
            return "error", "item_error"
    return "ok", str(response.status_code)


async def _one(
    client: httpx.AsyncClient, cfg: Config, index: int, body: bytes, injected: bool
) -> Result:
    started = time.perf_counter()
    try:
        response = await client.post(cfg.url, content=body)
    except httpx.TimeoutException:
        return Result(index, injected, "error", "timeout", None)
    except httpx.HTTPError as exc:
        return Result(index, injected, "error", f"transport:{type(exc).__name__}", None)
    latency = time.perf_counter() - started
    outcome, status = _classify(response, cfg.url)
    return Result(index, injected, outcome, status, latency)


def _progress(cfg: Config, console: Console | None) -> Progress:
    return Progress(
        TextColumn("canary load"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[errors]} errors"),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        disable=not cfg.progress,
    )


class _LoadRun:
    """One run: sends on schedule with at most ``concurrency`` requests in flight."""

    def __init__(self, cfg: Config, client: httpx.AsyncClient, progress: Progress) -> None:
        self.cfg = cfg
        self.client = client
        self.progress = progress
        self.planned = planned_requests(cfg.qps, cfg.duration_s, cfg.max_requests)
        self.goods = good_bodies(cfg.url, cfg.seed, cfg.batch)
        self.bad = bad_body(cfg.url)
        self.slots = asyncio.Semaphore(cfg.concurrency)
        self.tasks: set[asyncio.Task[Result]] = set()
        self.results: list[Result] = []
        self.errors = 0
        self.sent = 0
        self.bar = progress.add_task("load", total=self.planned, errors=0)

    def _finished(self, task: asyncio.Task[Result]) -> None:
        self.slots.release()
        self.tasks.discard(task)
        if task.cancelled():
            return
        result = task.result()
        self.results.append(result)
        self.errors += result.outcome == "error"
        self.progress.update(self.bar, advance=1, errors=self.errors)

    async def send_all(self) -> float:
        """Send on schedule until the deadline or the count; returns the sending window (s)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.cfg.duration_s
        last_send = start
        for index in range(self.planned):
            due = start + index / self.cfg.qps
            if due >= deadline:
                break
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.slots.acquire()  # back-pressure: all slots busy -> this request is late
            if loop.time() >= deadline:
                self.slots.release()
                break
            injected = is_injected(index, self.cfg.error_rate)
            body = self.bad if injected else self.goods[index % len(self.goods)]
            task = asyncio.create_task(_one(self.client, self.cfg, index, body, injected))
            self.tasks.add(task)
            task.add_done_callback(self._finished)
            self.sent += 1
            last_send = loop.time()
        return (last_send - start) + (1.0 / self.cfg.qps) if self.sent else 0.0

    async def drain(self) -> None:
        """Give requests in flight at most one more timeout, then cancel them."""
        if not self.tasks:
            return
        _, pending = await asyncio.wait(set(self.tasks), timeout=self.cfg.timeout_s + 1.0)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def run(cfg: Config, console: Console | None = None) -> Summary:
    """Send the planned requests on schedule and collect every result."""
    headers = {"content-type": "application/json", "x-api-key": cfg.api_key}
    limits = httpx.Limits(
        max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency
    )
    async with httpx.AsyncClient(
        timeout=cfg.timeout_s, limits=limits, headers=headers, trust_env=False
    ) as client:
        with _progress(cfg, console) as progress:
            load_run = _LoadRun(cfg, client, progress)
            window = await load_run.send_all()
            await load_run.drain()
    results = sorted(load_run.results, key=lambda r: r.index)
    return summarise(cfg.url, load_run.planned, results, load_run.sent, window)


# --- command line --------------------------------------------------------------------------------


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if not (math.isfinite(value) and value > 0):  # nan and inf pass `> 0` or break later
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return value

    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Send canary load to the Aegis AI engine, injecting a share of bad requests."
    )
    parser.add_argument("--url", required=True, help="engine base URL or its /infer URL")
    parser.add_argument("--qps", type=_positive(float), default=20.0, help="requests a second")
    parser.add_argument(
        "--duration", type=_positive(float), default=60.0, help="seconds of sending"
    )
    parser.add_argument(
        "--error-rate", type=_fraction, default=0.0, help="share of deliberately bad requests"
    )
    parser.add_argument("--api-key", default=None, help="the engine's API key (default: $API_KEY)")
    parser.add_argument(
        "--max-requests", type=_positive(int), default=None, help="cap on requests sent"
    )
    parser.add_argument(
        "--concurrency", type=_positive(int), default=None, help="most requests in flight"
    )
    parser.add_argument("--timeout", type=_positive(float), default=5.0, help="seconds per request")
    parser.add_argument(
        "--batch", type=_positive(int), default=1, help="incidents per /infer request"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic incidents")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace, environ: dict[str, str]) -> Config:
    api_key = args.api_key if args.api_key is not None else environ.get("API_KEY", "")
    if not api_key:
        raise ValueError("no API key: pass --api-key or set API_KEY (the engine refuses calls)")
    max_requests = min(args.max_requests or MAX_REQUESTS_CAP, MAX_REQUESTS_CAP)
    concurrency = args.concurrency or max(8, math.ceil(args.qps))
    return Config(
        url=normalise_url(args.url),
        api_key=api_key,
        qps=float(args.qps),
        duration_s=float(args.duration),
        error_rate=float(args.error_rate),
        max_requests=max_requests,
        concurrency=min(concurrency, MAX_CONCURRENCY),
        timeout_s=float(args.timeout),
        batch=int(args.batch),
        seed=int(args.seed),
        progress=not (args.no_progress or args.json),
    )


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def print_summary(summary: Summary, cfg: Config, console: Console) -> None:
    table = Table(title=f"canary load against {summary.url}", show_header=False)
    table.add_row("requests sent", f"{summary.sent} of {summary.planned} planned")
    table.add_row("achieved rate", f"{summary.achieved_qps:.2f}/s (asked {cfg.qps:g}/s)")
    table.add_row(
        "errors",
        f"{summary.errors} ({summary.error_rate:.2%}); injected bad: "
        f"{summary.injected_bad} ({cfg.error_rate:.2%} asked)",
    )
    table.add_row("answers", ", ".join(f"{k}: {v}" for k, v in summary.by_status.items()) or "-")
    for name in ("p50", "p95", "p99", "max"):
        table.add_row(f"latency {name}", _fmt_ms(summary.latency_ms.get(name)))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    err = Console(stderr=True)
    try:
        cfg = config_from_args(args, dict(os.environ))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)  # one line: Rich would wrap it at 80 columns
        return 2
    summary = asyncio.run(run(cfg, err))
    if args.json:
        print(json.dumps(asdict(summary), sort_keys=True))
    else:
        print_summary(summary, cfg, Console())
    if summary.sent and summary.answered == 0:
        print(f"error: no request got an HTTP answer from {cfg.url}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
