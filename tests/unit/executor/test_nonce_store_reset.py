"""Redis forgets: a restart without persistence, a FLUSHALL, or a replica taking over before
the latest writes reached it. A request signed before the nonce store's memory began may have
been claimed in the memory that was lost, so the executor refuses it (503
``nonce_store_reset``, retryable with a fresh signature) instead of accepting a replay.

Every Redis restarted or promoted here is a private ``redis-server`` on a free port; on the
shared one at 127.0.0.1:6379 only a test's own key prefix is ever deleted."""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from aegis.core.config import Settings
from aegis.core.errors import ConfigError
from aegis.database.core import Database
from aegis.executor.app import create_app
from aegis.executor.backends.kubernetes import KubernetesBackend
from aegis.executor.errors import NonceStoreReset
from aegis.executor.nonces import RedisNonceStore
from aegis.executor.signing import MAX_CLOCK_SKEW_S
from tests.conftest import require
from tests.support import processes
from tests.support.factories import audit_events
from tests.support.fake_kube import FakeKubeApiServer
from tests.support.logs import json_lines
from tests.unit.executor.conftest import ExecutorHarness, action_body

MARGIN_S = 1  # the executors below allow signers 1 s ahead of them, so a test waits 1-2 s
NOW = 1_800_000_000


@pytest.fixture
def db_backend() -> str:
    """The nonce store is Redis here; the executor's own tables do not change the behaviour."""
    return "sqlite"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[processes.PrivateRedis]:
    require(shutil.which("redis-server") is not None, "redis-server binary is not installed")
    with processes.restartable_redis(tmp_path / "redis") as server:
        yield server


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)


def _open(store: RedisNonceStore) -> None:
    """Begin the store's memory, then wait until a request signed now is accepted."""
    store.start()
    opens_at = math.ceil(time.time()) + MARGIN_S
    processes.wait_until("the watermark's margin has passed", lambda: time.time() >= opens_at)


@pytest.fixture
def redis_executor(
    make_settings: Callable[..., Settings],
    db_url: str,
    fake_kube: FakeKubeApiServer,
    private_redis: processes.PrivateRedis,
) -> Iterator[ExecutorHarness]:
    """The executor with its nonces in the private Redis, whose memory began >= 1 s ago."""
    settings = make_settings(database_url=db_url, executor_backend="kubernetes")
    store = RedisNonceStore(_client(private_redis.url), margin_s=MARGIN_S)
    _open(store)
    backend = KubernetesBackend(fake_kube.api_client())
    with TestClient(create_app(settings, backend=backend, nonce_store=store)) as client:
        yield ExecutorHarness(client=client, fake=fake_kube, settings=settings)


def _replay(harness: ExecutorHarness, body: dict[str, Any]) -> Any:
    """Send ``body`` again with the headers of the last request: a captured request replayed."""
    return harness.client.post(
        "/v1/actions",
        content=json.dumps(body).encode(),
        headers={**harness.sent[-1], "Content-Type": "application/json"},
    )


def test_a_request_replayed_after_redis_restarts_is_refused(
    redis_executor: ExecutorHarness, private_redis: processes.PrivateRedis
) -> None:
    assert redis_executor.post(action_body()).status_code == 200
    acted = len(redis_executor.fake.mutating_requests())
    private_redis.restart()  # every remembered nonce is gone

    replay = _replay(redis_executor, action_body())

    assert replay.status_code == 503, replay.text
    assert replay.json()["error"]["code"] == "nonce_store_reset"
    assert 1 <= int(replay.headers["Retry-After"]) <= MARGIN_S + 1
    assert len(redis_executor.fake.mutating_requests()) == acted


def test_a_replay_with_a_new_idempotency_key_is_refused_after_a_restart_too(
    redis_executor: ExecutorHarness, private_redis: processes.PrivateRedis
) -> None:
    # the idempotency key is no second line of defence for a request that was never sent
    # before: the attacker holds a signed request the executor refused (or never received)
    body = action_body(idempotency_key="captured")
    assert redis_executor.post(body).status_code == 200
    private_redis.restart()
    before = redis_executor.fake.snapshot()

    assert _replay(redis_executor, body).status_code == 503
    assert redis_executor.fake.snapshot() == before


def test_a_request_signed_after_the_restart_is_accepted_once_the_margin_has_passed(
    redis_executor: ExecutorHarness, private_redis: processes.PrivateRedis
) -> None:
    private_redis.restart()
    refused = redis_executor.post(action_body())
    assert refused.json()["error"]["code"] == "nonce_store_reset"
    wait_s = int(refused.headers["Retry-After"])

    time.sleep(wait_s)
    again = redis_executor.post(action_body())  # signed again: a fresh timestamp and nonce

    assert again.status_code == 200, again.text
    assert again.json()["status"] == "succeeded"
    assert _replay(redis_executor, action_body()).json()["error"]["code"] == "nonce_replayed"


def test_a_refusal_after_a_reset_is_audited(
    redis_executor: ExecutorHarness, private_redis: processes.PrivateRedis
) -> None:
    assert redis_executor.post(action_body()).status_code == 200
    private_redis.restart()
    assert _replay(redis_executor, action_body()).status_code == 503

    database = Database(redis_executor.settings.effective_database_url)
    try:
        [record] = audit_events(database, "authentication.failed")
    finally:
        database.dispose()
    data = json.loads(record.data)
    assert (record.actor, data["code"], data["service"]) == (
        "anonymous",
        "nonce_store_reset",
        "executor",
    )


class TestTheWatermark:
    """The store on its own, with the executor's clock in the test's hands."""

    @pytest.fixture
    def clock(self) -> list[float]:
        return [float(NOW)]

    @pytest.fixture
    def prefix(self, redis_url: str) -> Iterator[str]:
        prefix = f"aegis:test:{uuid.uuid4().hex}:nonce:"
        yield prefix
        _forget(redis_url, prefix)

    def test_a_flush_refuses_what_was_signed_within_the_skew_window_after_it(
        self, redis_url: str, prefix: str, clock: list[float]
    ) -> None:
        # FLUSHALL on the shared Redis is not ours to do: deleting our prefix is the same loss
        store = RedisNonceStore(_client(redis_url), prefix=prefix, clock=lambda: clock[0])
        store.start()
        clock[0] += MAX_CLOCK_SKEW_S + 5
        assert store.claim("nonce-aaaaaaaaaaaaaaaa", ttl_s=130, signed_at=int(clock[0]))
        _forget(redis_url, prefix)
        flushed_at = int(clock[0])
        clock[0] += 5

        # a nonce claimed just before the flush may have been signed by a clock up to the
        # window ahead of the executor's: anything signed before then + the window is refused
        for signed_at in (flushed_at, flushed_at + MAX_CLOCK_SKEW_S + 4):
            with pytest.raises(NonceStoreReset) as refused:
                store.claim("nonce-aaaaaaaaaaaaaaaa", ttl_s=130, signed_at=signed_at)
            assert refused.value.retry_after_s == MAX_CLOCK_SKEW_S
        assert store.claim(
            "nonce-bbbbbbbbbbbbbbbb", ttl_s=130, signed_at=flushed_at + MAX_CLOCK_SKEW_S + 5
        )
        store.close()

    def test_a_refused_request_claims_nothing(
        self, redis_url: str, prefix: str, clock: list[float]
    ) -> None:
        client = _client(redis_url)
        store = RedisNonceStore(client, prefix=prefix, clock=lambda: clock[0])
        with pytest.raises(NonceStoreReset):
            store.claim("nonce-cccccccccccccccc", ttl_s=130, signed_at=NOW)
        assert client.exists(prefix + "nonce-cccccccccccccccc") == 0
        store.close()


def test_a_promoted_replica_refuses_what_was_signed_before_it_took_over(
    tmp_path: Path, private_redis: processes.PrivateRedis
) -> None:
    # replication is asynchronous: the replica has the watermark, but maybe not the last
    # nonces. It is another Redis process (another run_id), so its memory begins anew.
    clock = [float(NOW)]
    with processes.restartable_redis(tmp_path / "replica") as replica:
        primary_client, replica_client = _client(private_redis.url), _client(replica.url)
        replica_client.replicaof("127.0.0.1", private_redis.port)
        store = RedisNonceStore(primary_client, clock=lambda: clock[0])
        store.start()
        clock[0] += MAX_CLOCK_SKEW_S + 5
        assert store.claim("nonce-dddddddddddddddd", ttl_s=130, signed_at=int(clock[0]))
        processes.wait_until(
            "the replica holds the nonce",
            lambda: replica_client.exists("aegis:executor:nonce:nonce-dddddddddddddddd") == 1,
        )
        replica_client.replicaof("NO", "ONE")
        # the write that never reached it before the primary died
        replica_client.delete("aegis:executor:nonce:nonce-dddddddddddddddd")

        promoted = RedisNonceStore(replica_client, clock=lambda: clock[0])
        with pytest.raises(NonceStoreReset):
            promoted.claim("nonce-dddddddddddddddd", ttl_s=130, signed_at=int(clock[0]))
        promoted.close()
        store.close()


def test_an_executor_refuses_to_start_on_a_redis_that_evicts(
    make_settings: Callable[..., Settings], db_url: str, private_redis: processes.PrivateRedis
) -> None:
    client = _client(private_redis.url)
    client.config_set("maxmemory-policy", "volatile-lru")
    client.close()
    settings = make_settings(database_url=db_url, redis_url=private_redis.url)

    with pytest.raises(ConfigError, match=r"maxmemory-policy volatile-lru.*noeviction"):
        create_app(settings)


def test_an_executor_starts_when_redis_will_not_tell_its_policy(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    db_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # managed Redis services often disable CONFIG: start, and say what could not be checked
    require(shutil.which("redis-server") is not None, "redis-server binary is not installed")
    with processes.restartable_redis(tmp_path / "redis", "--rename-command", "CONFIG", "") as r:
        settings = make_settings(database_url=db_url, redis_url=r.url)
        with json_lines(capsys) as written, TestClient(create_app(settings)) as client:
            assert client.get("/health").status_code == 200
            _, lines = written()
    assert "nonce_store_eviction_policy_unknown" in [line.get("event") for line in lines]


def _forget(redis_url: str, prefix: str) -> None:
    client = _client(redis_url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()
