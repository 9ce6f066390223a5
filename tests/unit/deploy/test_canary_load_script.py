"""scripts/simulate_canary_load.py: a bounded HTTP load against a real AI engine.

The engine is `python -m aegis serve engine` on a free loopback port with an empty data
directory: it has no trusted key, so it serves no model and answers 503 to every inference
request. The script must count those as errors (not crash), inject exactly its share of bad
requests, and every request it reports must have reached the engine (its own request counter
agrees).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.services import free_port
from tests.unit.deploy.manifests import REPO

SCRIPT = REPO / "scripts" / "simulate_canary_load.py"
API_KEY = "canary-load-test-key-" + "k" * 24
START_TIMEOUT_S = 60.0


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("simulate_canary_load", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


load = _load_script()


# --- the pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "called"),
    [
        ("http://canary:8000", "http://canary:8000/infer"),
        ("http://canary:8000/", "http://canary:8000/infer"),
        ("http://ingress/infer", "http://ingress/infer"),
        ("https://ingress/engine/predict", "https://ingress/engine/predict"),
        ("http://ingress/engine", "http://ingress/engine/infer"),
    ],
)
def test_url_is_normalised_to_the_inference_endpoint(given: str, called: str) -> None:
    assert load.normalise_url(given) == called


def test_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        load.normalise_url("ftp://canary/infer")


@pytest.mark.parametrize(("rate", "n"), [(0.05, 2400), (0.02, 3600), (0.1, 60), (0.333, 999)])
def test_injected_share_is_exact_and_spread(rate: float, n: int) -> None:
    flags = [load.is_injected(i, rate) for i in range(n)]
    assert sum(flags) == int(n * rate + 1e-9)
    first = [k for k, f in enumerate(flags) if f]
    gaps = [b - a for a, b in itertools.pairwise(first)]
    assert not gaps or max(gaps) - min(gaps) <= 1


def test_no_injection_at_zero_and_all_at_one() -> None:
    assert not any(load.is_injected(i, 0.0) for i in range(100))
    assert all(load.is_injected(i, 1.0) for i in range(100))


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert load.percentile(values, 50) == 50.0
    assert load.percentile(values, 95) == 95.0
    assert load.percentile(values, 99) == 99.0
    assert load.percentile([], 50) is None


def test_planned_requests_are_bounded_by_time_and_count() -> None:
    assert load.planned_requests(20.0, 120.0, 1_000_000) == 2400
    assert load.planned_requests(20.0, 120.0, 100) == 100


def test_missing_api_key_is_a_usage_error() -> None:
    args = load.parse_args(["--url", "http://127.0.0.1:1"])
    with pytest.raises(ValueError, match="API_KEY"):
        load.config_from_args(args, {})
    cfg = load.config_from_args(args, {"API_KEY": "from-env"})
    assert cfg.api_key == "from-env"


# --- against a real engine -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("engine")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "AEGIS_DATA_DIR": str(workdir / "data"),
        "API_KEY": API_KEY,
        "LOG_JSON": "true",
    }
    log = (workdir / "engine.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "aegis", "serve", "engine", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, (workdir / "engine.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the engine did not start"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def _run_script(*args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def _infer_requests(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "aegis_inference_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels["endpoint"] == "infer":
                counts[sample.labels["status"]] = sample.value
    return counts


@pytest.mark.slow
def test_engine_without_a_model_is_reported_as_errors_not_a_crash(engine: str) -> None:
    health = httpx.get(f"{engine}/health", timeout=5.0).json()
    assert health["model_loaded"] is False
    before = _infer_requests(engine).get("503", 0.0)

    code, summary = _run_script(
        "--url", engine, "--api-key", API_KEY, "--qps", "20", "--duration", "3",
        "--error-rate", "0.1", "--no-progress",
    )  # fmt: skip

    assert code == 0
    sent = summary["sent"]
    assert 0 < sent <= 60 == summary["planned"]
    assert summary["completed"] == sent == summary["answered"]
    assert summary["ok"] == 0
    assert summary["errors"] == sent
    assert summary["error_rate"] == 1.0
    assert summary["by_status"] == {"503": sent}
    assert summary["injected_bad"] == sum(load.is_injected(i, 0.1) for i in range(sent))
    assert summary["achieved_qps"] > 0
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    # Every request reached the engine and was counted there.
    assert _infer_requests(engine).get("503", 0.0) - before == sent


@pytest.mark.slow
def test_wrong_api_key_is_reported_as_401_errors(engine: str) -> None:
    code, summary = _run_script(
        "--url", f"{engine}/infer", "--api-key", "wrong-key", "--qps", "10", "--duration", "0.5",
    )  # fmt: skip
    assert code == 0
    assert summary["by_status"] == {"401": summary["sent"]}
    assert summary["error_rate"] == 1.0


def test_nothing_listening_exits_1(tmp_path: Path) -> None:
    port = free_port()
    code, summary = _run_script(
        "--url", f"http://127.0.0.1:{port}", "--api-key", "k", "--qps", "10", "--duration", "0.3",
        "--timeout", "1",
    )  # fmt: skip
    assert code == 1
    assert summary["answered"] == 0
    assert all(status.startswith("transport:") for status in summary["by_status"])
