"""Inference batching: sustained /infer throughput and latency with and without dynamic batching.

    .venv/bin/python -m bench.inference_batching [--rounds 3] [--duration 15] [--concurrency 64]
        [--wire columnar|points] [--json FILE]

Starts one engine per configuration (uvicorn, one process each, in subprocesses on free loopback
ports, serving the example model), then drives ``POST /infer`` (one synthetic incident per
request: six 240-point series and 120 log lines, ``aegis.engine.synthetic``; the series in the
columnar form, ``timestamps`` and ``values``, unless ``--wire points``) with a closed loop of
concurrent clients (``--concurrency`` incidents in flight). Configurations:

* ``batch 1``: ``BATCH_MAX_SIZE=1`` (each request scored on its own: the baseline);
* ``batch N, wait 0/5/20 ms``: ``BATCH_MAX_SIZE=N`` with ``BATCH_MAX_LATENCY_MS`` 0, 5, 20;
* ``batch 1, 8 incidents/request`` and ``batch N, wait 5 ms, 8 incidents/request``: clients
  that send eight incidents per ``/infer`` call (an eighth as many clients, so as many incidents
  in flight); the batched row's ratio is to the batch-1 row of the same request shape.

The configurations take turns, ``--rounds`` times (an idle engine uses no CPU), so that a change
in the machine's background load hits all of them alike; throughput is the median over rounds,
latency percentiles are over every request of every round; each configuration's garbage
collections per 100 incidents (by generation) and its CPU time per incident (the whole process,
``process_cpu_seconds_total``, and the part its batch worker spent scoring,
``aegis_inference_batch_cpu_seconds_total``) come from the engine's ``/metrics``. The clients
are a minimal HTTP/1.1 keep-alive client on asyncio streams (bodies serialised in advance) so
that the load generator takes as little as possible of the CPU it shares with the server. A
second table gives the in-process scoring cost per incident by batch size (no HTTP, no JSON):
the part of the work that batching can make cheaper.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MODEL = ROOT / "model_registry" / "example_multimodal" / "0.1"


@dataclass
class Outcome:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    mean_batch: float
    qps: float
    gc: tuple[float, float, float]  # collections per 100 incidents, by generation
    cpu: tuple[float, float]  # the engine's CPU ms per incident: all, the batch worker's
    per_request: int = 1  # incidents in each request
    baseline: bool = False  # BATCH_MAX_SIZE=1: what the rows of its request shape compare with

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000.0


@dataclass(frozen=True)
class Run:
    rate: float
    latencies: list[float]
    errors: int
    mean_batch: float
    gc: tuple[float, float, float]
    cpu: tuple[float, float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the server ------------------------------------------------------------------------------


def serve(port: int, max_size: int, max_latency_ms: float, queue_limit: int, key: str) -> None:
    """Run the engine in this process (the subprocess side of the benchmark)."""
    from pydantic import SecretStr

    from aegis.core import server
    from aegis.core.config import Settings
    from aegis.core.logging import configure_logging
    from aegis.engine import model as engine_model
    from aegis.engine.app import create_app
    from aegis.engine.state import ModelHolder, ModelMeta

    data = Path(tempfile.mkdtemp(prefix="aegis-bench-engine-"))
    settings = Settings(
        _env_file=None,
        data_dir=data,
        api_key=SecretStr(key),
        batch_max_size=max_size,
        batch_max_latency_ms=max_latency_ms,
        batch_queue_limit=queue_limit,
        log_level="WARNING",
    )
    configure_logging(level="WARNING", service="engine")
    loaded = (
        engine_model.load_model_dir(EXAMPLE_MODEL)
        if (EXAMPLE_MODEL / engine_model.SPEC_FILE).exists()
        else engine_model.train()
    )
    holder = ModelHolder()
    holder.swap(loaded, ModelMeta(loaded.name, loaded.version, loaded.digest, source="bench"))
    server.serve(create_app(settings, holder=holder), server.bind("127.0.0.1", port))


def start_server(
    max_size: int, max_latency_ms: float, key: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "bench.inference_batching",
        "--serve",
        str(port),
        "--max-size",
        str(max_size),
        "--max-latency-ms",
        str(max_latency_ms),
    ]
    env = {**os.environ, "BENCH_ENGINE_KEY": key}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"engine exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
            )
        try:
            status, body = asyncio.run(_get(port, "/health"))
            if status == 200 and json.loads(body).get("model_loaded"):
                return proc, port
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("engine did not become ready in 60 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the clients -----------------------------------------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        return await _read_response(reader)
    finally:
        writer.close()


def _incidents(count: int, wire: str) -> list[dict[str, Any]]:
    from aegis.engine import synthetic

    docs = synthetic.incidents(count, seed=7)
    return [synthetic.columnar(d) for d in docs] if wire == "columnar" else docs


def _requests(key: str, count: int, per_request: int, wire: str) -> list[bytes]:
    incidents = _incidents(count * per_request, wire)
    out = []
    for at in range(0, len(incidents), per_request):
        body = json.dumps({"incidents": incidents[at : at + per_request]}).encode()
        head = (
            f"POST /infer HTTP/1.1\r\nHost: bench\r\nX-API-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


async def _client(
    port: int, payloads: list[bytes], offset: int, until: float, record: dict[str, Any]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(payloads[i % len(payloads)])
            await writer.drain()
            status, _ = await _read_response(reader)
            elapsed = time.perf_counter() - started
            if record["measuring"]:
                if status == 200:
                    record["latencies"].append(elapsed)
                else:
                    record["errors"] += 1
            i += 1
    finally:
        writer.close()


async def _drive(
    port: int, payloads: list[bytes], concurrency: int, warmup: float, duration: float
) -> tuple[dict[str, Any], float]:
    record: dict[str, Any] = {"latencies": [], "errors": 0, "measuring": False}
    until = time.perf_counter() + warmup + duration
    tasks = [
        asyncio.create_task(_client(port, payloads, c, until, record)) for c in range(concurrency)
    ]
    await asyncio.sleep(warmup)
    record["before"] = await _scrape(port)
    record["measuring"] = True
    started = time.perf_counter()
    await asyncio.gather(*tasks)
    record["after"] = await _scrape(port)
    return record, time.perf_counter() - started


SCRAPED = {
    "aegis_inference_batch_size_sum": "batch_sum",
    "aegis_inference_batch_size_count": "batches",
    'python_gc_collections_total{generation="0"}': "gc0",
    'python_gc_collections_total{generation="1"}': "gc1",
    'python_gc_collections_total{generation="2"}': "gc2",
    "process_cpu_seconds_total": "cpu",
    "aegis_inference_batch_cpu_seconds_total": "batch_cpu",
}


async def _scrape(port: int) -> dict[str, float]:
    """The engine's batch-size totals and garbage collections so far (from ``/metrics``)."""
    _, body = await _get(port, "/metrics")
    out = dict.fromkeys(SCRAPED.values(), 0.0)
    for line in body.decode().splitlines():
        name, _, value = line.rpartition(" ")
        if name in SCRAPED:
            out[SCRAPED[name]] = float(value)
    return out


def _scoring_costs(rounds: int, sizes: tuple[int, ...], wire: str) -> dict[int, float]:
    """In-process scoring cost per incident (ms) at each batch size: median over rounds."""
    from aegis.engine import model as engine_model
    from aegis.engine import scoring
    from aegis.engine.recommender import OutcomeStats
    from aegis.engine.schemas import Incident

    loaded = (
        engine_model.load_model_dir(EXAMPLE_MODEL)
        if (EXAMPLE_MODEL / engine_model.SPEC_FILE).exists()
        else engine_model.train()
    )
    prepared = scoring.prepare(loaded)
    items: list[tuple[Incident, OutcomeStats]] = [
        (Incident.model_validate(d), {}) for d in _incidents(max(sizes), wire)
    ]
    samples: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            started = time.perf_counter()
            for at in range(0, len(items), n):
                scoring.score_batch(prepared, items[at : at + n])
            samples[n].append((time.perf_counter() - started) / len(items) * 1000.0)
    return {n: statistics.median(v) for n, v in samples.items()}


@dataclass(frozen=True)
class Config:
    name: str
    max_size: int
    wait_ms: float
    per_request: int  # incidents in each /infer request
    clients: int


def _measure(
    port: int, config: Config, args: argparse.Namespace, payloads: list[bytes]
) -> tuple[dict[str, Any], float, float, tuple[float, float, float], tuple[float, float]]:
    """One run: the record, its seconds, the mean batch size, the garbage collections (young,
    middle, full generation) per 100 incidents and the engine's CPU milliseconds per incident
    (the whole process; its batch worker, i.e. scoring)."""
    record, seconds = asyncio.run(
        _drive(port, payloads, config.clients, args.warmup, args.duration)
    )
    before, after = record["before"], record["after"]
    batches = after["batches"] - before["batches"]
    mean = (after["batch_sum"] - before["batch_sum"]) / batches if batches else float("nan")
    incidents = (after["batch_sum"] - before["batch_sum"]) or float("nan")
    young, middle, full = (
        100.0 * (after[g] - before[g]) / incidents for g in ("gc0", "gc1", "gc2")
    )
    cpu, batch_cpu = (1000.0 * (after[k] - before[k]) / incidents for k in ("cpu", "batch_cpu"))
    return record, seconds, mean, (young, middle, full), (cpu, batch_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every config, interleaved")
    parser.add_argument("--concurrency", type=int, default=64, help="incidents in flight")
    parser.add_argument("--batch-size", type=int, default=32, help="BATCH_MAX_SIZE when batching")
    parser.add_argument(
        "--wire", choices=("columnar", "points"), default="columnar", help="how series are sent"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--max-latency-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.max_size, args.max_latency_ms, 4096, os.environ["BENCH_ENGINE_KEY"])
        return
    console = Console()
    key = secrets.token_urlsafe(24)
    n, c = args.batch_size, args.concurrency
    configs = [Config("batch 1", 1, 0.0, 1, c)]
    configs += [Config(f"batch {n}, wait {ms:g} ms", n, ms, 1, c) for ms in (0.0, 5.0, 20.0)]
    configs.append(Config("batch 1, 8 incidents/request", 1, 0.0, 8, max(c // 8, 1)))
    configs.append(Config(f"batch {n}, wait 5 ms, 8 incidents/request", n, 5.0, 8, max(c // 8, 1)))
    payloads = {k: _requests(key, 96, k, args.wire) for k in {cfg.per_request for cfg in configs}}
    console.print(f"starting {len(configs)} engines ...")
    servers = [start_server(cfg.max_size, cfg.wait_ms, key) for cfg in configs]
    runs: dict[str, list[Run]] = {cfg.name: [] for cfg in configs}
    try:
        for r in range(args.rounds):
            for cfg, (_, port) in zip(configs, servers, strict=True):
                console.print(f"round {r + 1}/{args.rounds}: [bold]{cfg.name}[/] ...")
                record, seconds, mean, gc, cpu = _measure(
                    port, cfg, args, payloads[cfg.per_request]
                )
                rate = len(record["latencies"]) * cfg.per_request / seconds
                runs[cfg.name].append(
                    Run(rate, record["latencies"], record["errors"], mean, gc, cpu)
                )
    finally:
        for proc, _ in servers:
            stop_server(proc)
    outcomes = []
    for cfg in configs:
        done = runs[cfg.name]
        latencies = [x for run in done for x in run.latencies]
        rate = statistics.median(run.rate for run in done)
        mean = statistics.median(run.mean_batch for run in done)
        errors = sum(run.errors for run in done)
        young, middle, full = (statistics.median(run.gc[g] for run in done) for g in range(3))
        gc = (young, middle, full)
        every, scoring = (statistics.median(run.cpu[k] for run in done) for k in range(2))
        outcomes.append(
            Outcome(
                cfg.name,
                len(latencies),
                errors,
                0.0,
                latencies,
                mean,
                rate,
                gc,
                (every, scoring),
                per_request=cfg.per_request,
                baseline=cfg.max_size == 1,
            )
        )
    costs = _scoring_costs(args.rounds, (1, 8, 32, 64), args.wire)
    _report(console, args, outcomes, costs)


def _report(
    console: Console, args: argparse.Namespace, outcomes: list[Outcome], costs: dict[int, float]
) -> None:
    # each row against batch 1 with clients of the same request shape (one incident, or eight)
    bases = {o.per_request: o for o in outcomes if o.baseline}
    table = Table(
        title=f"/infer, {args.concurrency} incidents in flight (closed loop), series as "
        f"{args.wire}, median of {args.rounds} x {args.duration:g} s"
    )
    columns = ("config", "incidents/s", "x batch 1", "errors", "p50 ms", "p95 ms", "p99 ms")
    for col in (*columns, "mean batch", "gc / 100 inc.", "CPU ms / inc.: all / scoring"):
        table.add_column(col, justify="right" if col != "config" else "left")
    for o in outcomes:
        base = bases.get(o.per_request, outcomes[0])
        table.add_row(
            o.name,
            f"{o.qps:.1f}",
            f"{o.qps / base.qps:.2f}" if base.qps else "-",
            str(o.errors),
            f"{o.pct(0.50):.0f}",
            f"{o.pct(0.95):.0f}",
            f"{o.pct(0.99):.0f}",
            f"{o.mean_batch:.1f}",
            "/".join(f"{n:.1f}" for n in o.gc),
            f"{o.cpu[0]:.2f} / {o.cpu[1]:.2f}",
        )
    console.print(table)
    scoring_table = Table(title="scoring only, in process: ms per incident by batch size")
    for col in ("batch size", "ms / incident", "x batch 1"):
        scoring_table.add_column(col, justify="right")
    for size, ms in costs.items():
        scoring_table.add_row(str(size), f"{ms:.2f}", f"{costs[1] / ms:.2f}")
    console.print(scoring_table)
    if args.json:
        rows = [
            {
                "config": o.name,
                "incidents_per_s": o.qps,
                "errors": o.errors,
                "p50_ms": o.pct(0.5),
                "p95_ms": o.pct(0.95),
                "p99_ms": o.pct(0.99),
                "mean_batch": o.mean_batch,
                "gc_collections_per_100_incidents": dict(zip(("0", "1", "2"), o.gc, strict=True)),
                "cpu_ms_per_incident": {"process": o.cpu[0], "batch_worker": o.cpu[1]},
            }
            for o in outcomes
        ]
        doc = {
            "wire": args.wire,
            "http": rows,
            "scoring_ms_per_incident": {str(k): v for k, v in costs.items()},
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
