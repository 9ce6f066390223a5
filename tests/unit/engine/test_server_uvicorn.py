"""The engine behind a real uvicorn server in a subprocess: concurrent requests are batched and
every answer is the one scoring that incident alone gives."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aegis.engine import model, scoring, synthetic
from aegis.engine.schemas import Incident
from tests.support.processes import wait_port
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
settings = Settings(
    _env_file=None, data_dir=data, api_key=SecretStr(key), batch_max_size=16,
    batch_max_latency_ms=100, log_level="WARNING",
)
loaded = load_model_dir(model_dir)
holder = ModelHolder()
holder.swap(loaded, ModelMeta(loaded.name, loaded.version, loaded.digest, source=str(model_dir)))
server.serve(create_app(settings, holder=holder), server.bind("127.0.0.1", port))
"""


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    data = tmp_path_factory.mktemp("engine-data")
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, str(port), KEY, str(data), str(EXAMPLE)],
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
        proc.wait(30)


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
