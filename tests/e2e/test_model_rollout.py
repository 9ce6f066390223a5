"""A running engine (``aegis serve engine``) follows the registry while it answers requests:
a newly promoted signed version is swapped in, a version whose signature does not verify is
refused while the last good one keeps serving, and promoting an older version rolls back. No
request fails on the way."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from aegis.database.core import Database
from aegis.engine import synthetic
from aegis.registry.cosign_keys import generate_private_key
from tests.support.factories import audit_events
from tests.support.processes import aegis_serve, wait_until
from tests.support.releases import Releases, promote
from tests.support.services import free_port

KEY = "rollout-test-key-" + "r" * 24


class _Traffic:
    """One client sending ``/predict`` back to back; every answer's status and model version."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._body = {"incident": synthetic.columnar(synthetic.incident("crash_loop", 7))}

    def run(self) -> None:
        with httpx.Client(timeout=30, headers={"X-API-Key": KEY}) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"{self.url}/predict", json=self._body)
                except httpx.HTTPError as exc:  # a dropped connection is a dropped request
                    self.answers.append((0, type(exc).__name__))
                    continue
                version = response.json()["model"]["version"] if response.is_success else None
                self.answers.append((response.status_code, version))

    def versions(self) -> list[str | None]:
        return [version for _, version in self.answers]

    @contextmanager
    def running(self) -> Iterator[_Traffic]:
        worker = threading.Thread(target=self.run, daemon=True)
        worker.start()
        try:
            yield self
        finally:
            self._stop.set()
            worker.join(timeout=30)


@contextmanager
def _engine(tmp_path: Path, db_url: str, trusted: Path) -> Iterator[str]:
    with aegis_serve(
        "engine",
        tmp_path,
        free_port(),
        AEGIS_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=db_url,
        AEGIS_TRUSTED_KEYS=str(trusted),
        API_KEY=KEY,
        MODEL_WATCH_INTERVAL_S="0.2",
    ) as url:
        yield url


def _health(url: str) -> dict[str, Any]:
    try:
        response = httpx.get(f"{url}/health", timeout=2)
    except httpx.HTTPError:
        return {}
    return dict(response.json())


def _serving(url: str, version: str) -> Callable[[], bool]:
    def probe() -> bool:
        model = _health(url).get("model") or {}
        return bool(model.get("version") == version)

    return probe


def test_the_engine_follows_promotions_without_dropping_a_request(
    tmp_path: Path, db_url: str, database: Database
) -> None:
    releases = Releases.start(tmp_path, database)
    releases.release("0.1")

    with _engine(tmp_path, db_url, releases.pub) as url:
        wait_until("the engine serves 0.1", _serving(url, "0.1"))
        with _Traffic(url).running() as traffic:
            wait_until("answers arrive", lambda: len(traffic.answers) >= 3)

            releases.release("0.2")
            wait_until("the engine serves 0.2", _serving(url, "0.2"))
            wait_until("0.2 answers", lambda: "0.2" in traffic.versions())

            # someone with write access to the store replaces 0.3's signature
            releases.release("0.3", sign_with=generate_private_key())
            wait_until("0.3 is refused", lambda: bool(audit_events(database, "model.load_refused")))
            answered = len(traffic.answers)
            wait_until("more answers", lambda: len(traffic.answers) >= answered + 3)
            health = _health(url)
            assert health["model"]["version"] == "0.2"
            assert "signature" in health["last_error"]

            promote(database, "0.1")  # roll back to the archived version
            wait_until("the engine serves 0.1 again", _serving(url, "0.1"))
            wait_until("0.1 answers again", lambda: traffic.versions()[-1] == "0.1")

    statuses = {status for status, _ in traffic.answers}
    assert statuses == {200}, [a for a in traffic.answers if a[0] != 200][:5]
    versions = traffic.versions()
    assert "0.3" not in versions
    # answers changed version exactly at the swaps: 0.1, then 0.2, then 0.1 again
    changes = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
    assert changes == ["0.1", "0.2", "0.1"]
    refused = audit_events(database, "model.load_refused")
    assert {event.resource for event in refused} == {"model:example_multimodal/0.3"}
    verified = [event.resource for event in audit_events(database, "model.verified")]
    assert verified == [f"model:example_multimodal/{v}" for v in ("0.1", "0.2", "0.1")]
