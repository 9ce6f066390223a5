"""The engine behind a real uvicorn server in a subprocess: concurrent requests are batched and
every answer is the one scoring that incident alone gives."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from aegis.engine import model, scoring, synthetic
from aegis.engine.schemas import Incident
from tests.support.processes import wait_port, wait_until
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "model_registry" / "example_multimodal" / "0.1"
KEY = "uvicorn-test-key-" + "u" * 24
LAUNCH = """
import sys
from pathlib import Path
from pydantic import SecretStr
from aegis.core import server
from aegis.core.config import Settings
from aegis.engine.app import create_app
from aegis.engine.model import load_model_dir
from aegis.engine.state import ModelHolder, ModelMeta

port, key, data, model_dir = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
max_size, max_latency_ms = int(sys.argv[5]), float(sys.argv[6])
settings = Settings(
    _env_file=None, data_dir=data, api_key=SecretStr(key), batch_max_size=max_size,
    batch_max_latency_ms=max_latency_ms, log_level="WARNING",
)
loaded = load_model_dir(model_dir)
holder = ModelHolder()
holder.swap(loaded, ModelMeta(loaded.name, loaded.version, loaded.digest, source=str(model_dir)))
server.serve(create_app(settings, holder=holder), server.bind("127.0.0.1", port))
"""


@contextmanager
def _engine(data: Path, *, max_size: int, max_latency_ms: float) -> Iterator[str]:
    """A real engine process serving the example model; its URL."""
    port = free_port()
    argv = [str(port), KEY, str(data), str(EXAMPLE), str(max_size), str(max_latency_ms)]
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, timeout_s=60)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not httpx.get(url + "/health").json()["model_loaded"]:
            assert time.monotonic() < deadline, "the engine never loaded its model"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _engine(tmp_path_factory.mktemp("engine-data"), max_size=16, max_latency_ms=100) as url:
        yield url


async def _infer_concurrently(url: str, docs: list[dict[str, object]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": KEY}, timeout=60) as client:
        return list(
            await asyncio.gather(*(client.post("/infer", json={"incident": d}) for d in docs))
        )


def _batches(url: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("aegis_inference_batch_size_count"):
            return float(line.split()[-1])
    return 0.0


def test_concurrent_requests_are_batched_and_answered_as_if_alone(engine_url: str) -> None:
    docs = synthetic.incidents(48, seed=21)
    batches_before = _batches(engine_url)

    responses = asyncio.run(_infer_concurrently(engine_url, docs))

    assert [r.status_code for r in responses] == [200] * 48
    batches = _batches(engine_url) - batches_before
    assert batches < 48  # some requests shared a batch
    prepared = scoring.prepare(model.load_model_dir(EXAMPLE))
    for doc, response in zip(docs, responses, strict=True):
        alone = scoring.score_incident(prepared, Incident.model_validate(doc))
        served = response.json()["predictions"][0]["prediction"]
        assert served == alone.model_dump(mode="json")


def test_the_real_server_enforces_the_api_key_and_the_body_limit(engine_url: str) -> None:
    assert httpx.post(engine_url + "/predict", json={}).status_code == 401
    huge = b'{"incident": {"logs": ["' + b"x" * 2_000_000 + b'"]}}'
    response = httpx.post(
        engine_url + "/predict",
        content=huge,
        headers={"x-api-key": KEY, "content-type": "application/json"},
    )
    assert response.status_code == 413


def _metric(url: str, name: str, **labels: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _queue_depth(url: str) -> int:
    return int(httpx.get(url + "/health").json()["batch"]["queue_depth"])


def _gone(url: str) -> float:
    """Requests counted as given up because their client left (status 499)."""
    return _metric(url, "aegis_inference_requests_total", endpoint="predict", status="499")


def _send_and_leave(url: str, body: bytes) -> socket.socket:
    """A connection that has sent a whole ``/predict`` request; close it to walk away."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode("ascii") + body)
    return sock


def test_a_request_whose_client_went_away_is_dropped_before_its_batch(
    tmp_path: Path,
) -> None:
    # A batch waits (up to ten minutes) until four incidents are queued, so the three requests
    # whose clients leave are still queued when they leave: a timed-out caller's work.
    with _engine(tmp_path, max_size=4, max_latency_ms=600_000) as url:
        body = json.dumps({"incident": synthetic.incident("quiet", 1)}).encode()
        gone = [_send_and_leave(url, body) for _ in range(3)]
        wait_until("three requests are queued", lambda: _queue_depth(url) == 3)
        scored_before = _metric(url, "aegis_inference_batch_size_sum")
        for sock in gone:
            sock.close()
        wait_until("the engine has given the three requests up", lambda: _gone(url) == 3)
        live = httpx.post(
            url + "/infer",
            json={"incidents": synthetic.incidents(4, seed=5)},
            headers={"x-api-key": KEY},
            timeout=60,
        )
        scored = _metric(url, "aegis_inference_batch_size_sum") - scored_before
        depth = _queue_depth(url)

    assert live.status_code == 200
    assert [p["ok"] for p in live.json()["predictions"]] == [True] * 4
    assert scored == 4  # the live incidents; none of the abandoned ones
    assert depth == 0


def _predict_statuses(url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith('aegis_inference_requests_total{endpoint="predict"'):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] = float(line.rsplit(" ", 1)[1])
    return counts


def test_a_client_that_leaves_while_sending_its_body_is_not_a_server_error(
    engine_url: str,
) -> None:
    before = _predict_statuses(engine_url)
    port = int(engine_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n"
            'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"incident": '.encode()
        )

    def counted() -> dict[str, float]:
        after = _predict_statuses(engine_url)
        return {s: n - before.get(s, 0.0) for s, n in after.items() if n != before.get(s, 0.0)}

    wait_until("the request is counted", lambda: bool(counted()))
    assert counted() == {"499": 1.0}  # the client went away; not a 500 of the engine's
