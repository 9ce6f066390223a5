"""Remembered nonces: a signed request is accepted once, whatever its timestamp window.

One contract, two stores: Redis (``SET key 1 NX EX ttl``) when ``REDIS_URL`` is set, otherwise
the ``executor_nonces`` table with an expiry column. Both fail closed: a store that cannot answer
raises :class:`NonceStoreUnavailable` (503) and the request is not executed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import redis
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.executor.errors import NonceStoreUnavailable
from aegis.executor.models import ExecutorNonce

DEFAULT_REDIS_PREFIX = "aegis:executor:nonce:"


class NonceStore(Protocol):
    """Claim a nonce for ``ttl_s`` seconds; True the first time, False while it is remembered."""

    def claim(self, nonce: str, *, ttl_s: int) -> bool: ...

    def close(self) -> None: ...


class RedisNonceStore:
    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_REDIS_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_REDIS_PREFIX) -> RedisNonceStore:
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, prefix=prefix)

    def claim(self, nonce: str, *, ttl_s: int) -> bool:
        try:
            created = self._client.set(self._prefix + nonce, b"1", nx=True, ex=max(1, ttl_s))
        except redis.RedisError:
            raise NonceStoreUnavailable(
                "nonce store (Redis) unreachable; refusing to execute"
            ) from None
        return bool(created)

    def close(self) -> None:
        self._client.close()


class DatabaseNonceStore:
    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self._clock = clock

    def claim(self, nonce: str, *, ttl_s: int) -> bool:
        now = self._clock()
        try:
            with self._database.unit_of_work() as session:
                # Forget what has expired, then insert: the primary key makes the claim atomic.
                session.execute(delete(ExecutorNonce).where(ExecutorNonce.expires_at < now))
                session.add(ExecutorNonce(nonce=nonce, expires_at=math.ceil(now + ttl_s)))
                session.flush()  # raise the duplicate-key error here, inside the transaction
        except IntegrityError:
            return False
        except SQLAlchemyError:  # unreachable, or refusing writes (a demoted primary)
            raise NonceStoreUnavailable(
                "nonce store (database) unreachable; refusing to execute"
            ) from None
        return True

    def close(self) -> None:
        """The database belongs to the app context, which disposes of it."""


def build_nonce_store(settings: Settings, database: Database) -> NonceStore:
    """Redis when ``REDIS_URL`` is set, else the database table."""
    if settings.redis_url:
        return RedisNonceStore.from_url(settings.redis_url)
    return DatabaseNonceStore(database)
