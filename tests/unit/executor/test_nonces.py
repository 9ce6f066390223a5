"""The nonce-store contract, run against Redis (the real one at 127.0.0.1:6379, a private key
prefix per test) and the database table (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import make_url, select

from aegis.database.core import Database
from aegis.executor.errors import NonceStoreUnavailable
from aegis.executor.models import ExecutorNonce
from aegis.executor.nonces import DatabaseNonceStore, NonceStore, RedisNonceStore
from aegis.executor.signing import MAX_CLOCK_SKEW_S
from tests.support.services import free_port

NOW = 1_800_000_000  # the executor's clock in these tests
SIGNED_AT = NOW  # every request here was signed at NOW


class NonceStoreContract:
    """What every nonce store does; subclasses provide the ``store`` fixture."""

    def test_a_new_nonce_is_claimed(self, store: NonceStore) -> None:
        assert store.claim("nonce-aaaaaaaaaaaaaaaa", ttl_s=60, signed_at=SIGNED_AT) is True

    def test_a_claimed_nonce_cannot_be_claimed_again(self, store: NonceStore) -> None:
        store.claim("nonce-bbbbbbbbbbbbbbbb", ttl_s=60, signed_at=SIGNED_AT)
        assert store.claim("nonce-bbbbbbbbbbbbbbbb", ttl_s=60, signed_at=SIGNED_AT) is False

    def test_different_nonces_do_not_collide(self, store: NonceStore) -> None:
        assert store.claim("nonce-cccccccccccccccc", ttl_s=60, signed_at=SIGNED_AT) is True
        assert store.claim("nonce-dddddddddddddddd", ttl_s=60, signed_at=SIGNED_AT) is True


@pytest.fixture
def clock() -> list[float]:
    return [float(NOW)]


class TestRedisNonceStore(NonceStoreContract):
    @pytest.fixture
    def client(self, redis_url: str) -> Iterator[redis.Redis]:
        client = redis.Redis.from_url(redis_url)
        yield client
        client.close()

    @pytest.fixture
    def prefix(self, client: redis.Redis) -> Iterator[str]:
        prefix = f"aegis:test:{uuid.uuid4().hex}:nonce:"
        yield prefix
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)

    @pytest.fixture
    def store(self, client: redis.Redis, prefix: str, clock: list[float]) -> RedisNonceStore:
        """A store whose memory began long enough before NOW (a minute and more) to remember
        every nonce signed at NOW (test_nonce_store_reset.py: when it began after)."""
        clock[0] = NOW - MAX_CLOCK_SKEW_S - 1
        store = RedisNonceStore(client, prefix=prefix, clock=lambda: clock[0])
        store.start()
        clock[0] = NOW
        return store

    def test_a_claim_expires_with_its_ttl(
        self, store: RedisNonceStore, client: redis.Redis, prefix: str
    ) -> None:
        store.claim("nonce-eeeeeeeeeeeeeeee", ttl_s=130, signed_at=SIGNED_AT)
        assert 0 < client.ttl(prefix + "nonce-eeeeeeeeeeeeeeee") <= 130

    def test_an_unreachable_redis_fails_closed(self) -> None:
        store = RedisNonceStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
        try:
            with pytest.raises(NonceStoreUnavailable, match="refusing to execute"):
                store.claim("nonce-ffffffffffffffff", ttl_s=60, signed_at=SIGNED_AT)
        finally:
            store.close()


class TestDatabaseNonceStore(NonceStoreContract):
    @pytest.fixture
    def store(self, database: Database, clock: list[float]) -> DatabaseNonceStore:
        return DatabaseNonceStore(database, clock=lambda: clock[0])

    def test_an_expired_nonce_is_forgotten(
        self, store: DatabaseNonceStore, database: Database, clock: list[float]
    ) -> None:
        store.claim("nonce-gggggggggggggggg", ttl_s=130, signed_at=SIGNED_AT)
        clock[0] += 131
        assert store.claim("nonce-hhhhhhhhhhhhhhhh", ttl_s=130, signed_at=SIGNED_AT) is True
        with database.unit_of_work() as session:
            remembered = session.scalars(select(ExecutorNonce.nonce)).all()
        assert remembered == ["nonce-hhhhhhhhhhhhhhhh"]

    def test_a_nonce_is_remembered_until_its_ttl(
        self, store: DatabaseNonceStore, clock: list[float]
    ) -> None:
        store.claim("nonce-iiiiiiiiiiiiiiii", ttl_s=130, signed_at=SIGNED_AT)
        clock[0] += 129
        assert store.claim("nonce-iiiiiiiiiiiiiiii", ttl_s=130, signed_at=SIGNED_AT) is False

    def test_a_database_that_refuses_writes_fails_closed(
        self, db_url: str, clock: list[float]
    ) -> None:
        # as a PostgreSQL primary demoted to a standby in a failover does: 503, which the
        # backend's dispatcher retries, not a 500 that fails the approved action for good
        read_only = _read_only(db_url)
        try:
            store = DatabaseNonceStore(read_only, clock=lambda: clock[0])
            with pytest.raises(NonceStoreUnavailable, match="refusing to execute"):
                store.claim("nonce-jjjjjjjjjjjjjjjj", ttl_s=130, signed_at=SIGNED_AT)
        finally:
            read_only.dispose()


def _read_only(url: str) -> Database:
    """The same database through connections that may not write."""
    if make_url(url).get_backend_name() == "sqlite":
        return Database(f"sqlite:///file:{make_url(url).database}?mode=ro&uri=true")
    options = "-c default_transaction_read_only=on"
    return Database(url, connect_args={"connect_timeout": 5, "options": options})
