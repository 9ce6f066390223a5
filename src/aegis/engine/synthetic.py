"""Synthetic incidents: realistic shapes for the benchmark, the load test, the tests and docs.

Each incident is one hour of six metric series at a 15 s step (240 points each: CPU, memory,
request rate, p99 latency, error rate, restarts) and about 120 log lines of the affected
workload, with the trouble of its *scenario* in the last quarter. Deterministic: the same
``(scenario, seed)`` always gives the same incident (numpy's PCG64 generator).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCENARIOS = ("crash_loop", "memory_leak", "saturation", "bad_deploy", "dependency", "quiet")
STEP_S = 15.0
POINTS = 240
START = 1_795_428_000.0  # 2026-11-23T10:00:00Z
LOG_LINES = 120


def _noise(rng: np.random.Generator, base: float, scale: float) -> np.ndarray:
    return base + rng.normal(0.0, scale, POINTS)


def _series(name: str, ts: np.ndarray, values: np.ndarray, **labels: str) -> dict[str, Any]:
    points = [[float(t), round(float(v), 6)] for t, v in zip(ts, values, strict=True)]
    return {"name": name, "labels": labels, "points": points}


def _logs(rng: np.random.Generator, scenario: str, ts: np.ndarray) -> list[dict[str, Any]]:
    lines = []
    times = np.sort(rng.uniform(ts[0], ts[-1], LOG_LINES))
    trouble_from = ts[int(POINTS * 0.75)]
    for i, t in enumerate(times.tolist()):
        trouble = t >= trouble_from
        if trouble and scenario == "crash_loop" and i % 3 == 0:
            text = "panic: runtime error: invalid memory address or nil pointer dereference"
        elif trouble and scenario == "memory_leak" and i % 4 == 0:
            text = f"WARN gc pause {rng.integers(200, 900)}ms heap {rng.integers(900, 990)}MiB"
        elif trouble and scenario == "bad_deploy" and i % 2 == 0:
            text = f"ERROR handler /api/v2/orders failed: KeyError 'currency' request_id={i:08x}"
        elif trouble and scenario == "dependency" and i % 2 == 0:
            port = 5432
            text = (
                f"ERROR db pool: connection refused to 10.0.3.{i % 4}:{port} after {i % 5} retries"
            )
        elif trouble and scenario == "saturation" and i % 3 == 0:
            text = f"WARN request queue length {rng.integers(50, 200)} exceeds soft limit"
        else:
            path = ("/api/v1/items", "/api/v1/orders", "/healthz")[i % 3]
            text = f"INFO GET {path}/{rng.integers(1, 9999)} 200 {rng.integers(2, 80)}ms"
        lines.append({"timestamp": round(t, 3), "message": text})
    return lines


def incident(scenario: str = "crash_loop", seed: int = 0) -> dict[str, Any]:
    """One incident as the JSON body's ``incident`` object."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
    rng = np.random.default_rng([SCENARIOS.index(scenario), seed])
    ts = START + np.arange(POINTS) * STEP_S
    late = np.arange(POINTS) >= int(POINTS * 0.75)
    cpu, mem = _noise(rng, 0.35, 0.03), _noise(rng, 400.0, 4.0)
    rps, p99 = _noise(rng, 120.0, 6.0), _noise(rng, 0.18, 0.01)
    errors, restarts = np.abs(_noise(rng, 0.2, 0.05)), np.zeros(POINTS)
    alert, severity, changes = "KubePodCrashLooping", "critical", []
    if scenario == "crash_loop":
        restarts = np.cumsum(late & (rng.random(POINTS) < 0.1)).astype(float)
    elif scenario == "memory_leak":
        mem = mem + np.linspace(0.0, 450.0, POINTS)
        alert, severity = "ContainerMemoryHigh", "warning"
    elif scenario == "saturation":
        rps = rps + late * 110.0
        cpu = cpu + late * 0.5
        p99 = p99 + late * 0.6
        alert, severity = "HighRequestLatency", "warning"
    elif scenario == "bad_deploy":
        errors = errors + late * 8.0
        alert, severity = "HighErrorRate", "critical"
        changes = [
            {
                "kind": "deploy",
                "at": float(ts[int(POINTS * 0.72)]),
                "from_version": "v41",
                "to_version": "v42",
                "from_revision": 41,
                "to_revision": 42,
            }
        ]
    elif scenario == "dependency":
        errors = errors + late * 3.0
        p99 = p99 + late * 0.3
        alert, severity = "HighErrorRate", "warning"
    else:
        alert, severity = "KubeDeploymentReplicasMismatch", "info"
    return {
        "id": f"{scenario}-{seed}",
        "alert": {
            "labels": {
                "alertname": alert,
                "namespace": "demo",
                "deployment": "web",
                "pod": f"web-5d4f8b7c9-{seed % 100000:05d}",
                "severity": severity,
            },
            "startsAt": float(ts[int(POINTS * 0.78)]),
        },
        "series": [
            _series("container_cpu_usage_seconds_rate", ts, cpu),
            _series("container_memory_working_set_mib", ts, mem),
            _series("http_requests_per_second", ts, rps),
            _series("http_request_duration_p99_seconds", ts, p99),
            _series("http_errors_per_second", ts, errors),
            _series("kube_pod_container_status_restarts_total", ts, restarts),
        ],
        "logs": _logs(rng, scenario, ts),
        "changes": changes,
        "replicas": 3,
    }


def incidents(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` incidents cycling through the scenarios."""
    return [incident(SCENARIOS[i % len(SCENARIOS)], seed + i) for i in range(count)]


def columnar(incident: dict[str, Any]) -> dict[str, Any]:
    """The same incident with every series in the columnar form (``timestamps`` and ``values``)."""
    out = dict(incident)
    out["series"] = []
    for s in incident.get("series", []):
        series = {k: v for k, v in s.items() if k != "points"}
        points = s.get("points", [])
        series["timestamps"] = [t for t, _ in points]
        series["values"] = [v for _, v in points]
        out["series"].append(series)
    return out
