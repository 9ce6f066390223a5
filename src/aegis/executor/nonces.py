"""Remembered nonces: a signed request is accepted once, whatever its timestamp window.

One contract, two stores: Redis when ``REDIS_URL`` is set, otherwise the ``executor_nonces``
table with an expiry column. Both fail closed: a store that cannot answer raises
:class:`NonceStoreUnavailable` (503) and the request is not executed.

Redis can forget: a restart without persistence (or with an RDB/AOF that lags), a ``FLUSHALL``,
a replica promoted before the latest writes reached it. A request signed before that may have
been claimed in the memory that was lost, and would be accepted again. So the Redis store keeps
a watermark, ``<prefix>epoch`` = ``"<run_id> <t>"``: which Redis process began remembering
(``INFO server`` ``run_id``) and when, by the executor's clock. The claim is one Lua script:
when the watermark is missing or names another process, memory began now and the watermark is
set again; a request whose signed timestamp is earlier than ``t + margin`` is refused without
claiming (:class:`NonceStoreReset`, 503 with ``Retry-After``: sign again); otherwise ``SET
nonce 1 NX EX ttl``. ``margin`` is the forward clock skew the signature check allows
(:data:`aegis.executor.signing.MAX_CLOCK_SKEW_S`): a nonce claimed before ``t`` was signed at
most that far ahead of the executor's clock, so no timestamp from ``t + margin`` on can have
been claimed before the memory began (docs/executor.md, "Replay protection").

Redis must not evict nonces: :meth:`RedisNonceStore.start` refuses a Redis whose
``maxmemory-policy`` is not ``noeviction`` and warns when ``CONFIG`` is not allowed to say.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import redis
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from aegis.core.config import Settings
from aegis.core.errors import ConfigError
from aegis.core.logging import get_logger
from aegis.database.core import Database
from aegis.executor.errors import NonceStoreReset, NonceStoreUnavailable
from aegis.executor.models import ExecutorNonce
from aegis.executor.signing import MAX_CLOCK_SKEW_S

log = get_logger(__name__)
DEFAULT_REDIS_PREFIX = "aegis:executor:nonce:"
EPOCH_KEY = "epoch"  # under the prefix; a nonce is 16-128 characters, so never this name


class NonceStore(Protocol):
    """Claim a nonce for ``ttl_s`` seconds; True the first time, False while it is remembered.

    ``signed_at`` is the request's signed timestamp: a store that may have forgotten nonces
    since then raises :class:`NonceStoreReset` instead of answering True."""

    def claim(self, nonce: str, *, ttl_s: int, signed_at: int) -> bool: ...

    def close(self) -> None: ...


# KEYS[1]: the watermark. ARGV[1]: now (whole seconds, rounded up). Sets ``began`` (when this
# Redis process began remembering) and ``reset`` (1 when that is now).
_BEGAN_LUA = """
local info = redis.call('INFO', 'server')
local server = string.match(info, 'run_id:(%x+)') or ''
local began = nil
local mark = redis.call('GET', KEYS[1])
if mark then
  local owner, at = string.match(mark, '^(%x*) (%d+)$')
  if owner == server then began = tonumber(at) end
end
local reset = 0
if not began then
  began = tonumber(ARGV[1])
  redis.call('SET', KEYS[1], server .. ' ' .. ARGV[1])
  reset = 1
end
"""
# ARGV[2]: signed timestamp, ARGV[3]: TTL, ARGV[4]: margin; KEYS[2]: the nonce.
# Returns {verdict, open_at, reset}: verdict 1 claimed, 0 claimed before, -1 signed too early.
CLAIM_LUA = (
    _BEGAN_LUA
    + """
local open_at = began + tonumber(ARGV[4])
if tonumber(ARGV[2]) < open_at then
  return {-1, open_at, reset}
end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  return {1, open_at, reset}
end
return {0, open_at, reset}
"""
)
MARK_LUA = _BEGAN_LUA + "return {began, reset}\n"


class RedisNonceStore:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = DEFAULT_REDIS_PREFIX,
        clock: Callable[[], float] = time.time,
        margin_s: int = MAX_CLOCK_SKEW_S,
    ) -> None:
        """``margin_s``: how far ahead of this clock a signer's may be (the signature check's
        window); a request signed earlier than the watermark plus this is refused."""
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._margin_s = margin_s
        self._claim = client.register_script(CLAIM_LUA)
        self._mark = client.register_script(MARK_LUA)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = DEFAULT_REDIS_PREFIX) -> RedisNonceStore:
        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, prefix=prefix)

    def start(self) -> None:
        """At start-up: refuse a Redis that may evict nonces (:class:`ConfigError`), and begin
        the watermark if there is none. An unreachable Redis is only logged: every claim
        fails closed until it answers."""
        try:
            self._check_eviction_policy()
            self._begun(self._mark(keys=[self._prefix + EPOCH_KEY], args=[self._now()]))
        except redis.RedisError as exc:
            log.warning("nonce_store_unavailable_at_start", error=type(exc).__name__)

    def _check_eviction_policy(self) -> None:
        try:
            answer = self._client.config_get("maxmemory-policy")
        except redis.ResponseError:  # CONFIG renamed or not granted (managed Redis, ACLs)
            log.warning(
                "nonce_store_eviction_policy_unknown",
                reason="CONFIG GET maxmemory-policy refused",
                required="noeviction",
            )
            return
        policy = answer.get("maxmemory-policy")
        if policy is not None and policy != "noeviction":
            raise ConfigError(
                f"the Redis at REDIS_URL evicts keys (maxmemory-policy {policy}); executor "
                "nonces must not be evicted: set maxmemory-policy noeviction"
            )

    def claim(self, nonce: str, *, ttl_s: int, signed_at: int) -> bool:
        now = self._now()
        try:
            verdict, open_at, reset = self._claim(
                keys=[self._prefix + EPOCH_KEY, self._prefix + nonce],
                args=[now, signed_at, max(1, ttl_s), self._margin_s],
            )
        except redis.RedisError:
            raise NonceStoreUnavailable(
                "nonce store (Redis) unreachable; refusing to execute"
            ) from None
        self._begun([now, reset])
        if verdict == -1:
            raise NonceStoreReset(
                "nonce store (Redis) lost its memory after this request was signed (restarted, "
                "flushed or failed over); refusing it, as it may be a replay: sign it again",
                retry_after_s=int(open_at) - self._clock(),
            )
        return bool(verdict == 1)

    def _begun(self, answer: list[Any]) -> None:
        began, reset = answer
        if reset:
            log.warning(
                "nonce_store_reset",
                began=int(began),
                refusing_signed_before=int(began) + self._margin_s,
                reason="the Redis watermark was missing or set by another Redis process",
            )

    def _now(self) -> int:
        return math.ceil(self._clock())

    def close(self) -> None:
        self._client.close()


class DatabaseNonceStore:
    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self._clock = clock

    def claim(self, nonce: str, *, ttl_s: int, signed_at: int) -> bool:
        """``signed_at`` is not needed: the table is durable, it forgets only what expired."""
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
    """Redis when ``REDIS_URL`` is set (checked and its watermark begun), else the database
    table."""
    if settings.redis_url:
        store = RedisNonceStore.from_url(settings.redis_url)
        try:
            store.start()
        except BaseException:
            store.close()
            raise
        return store
    return DatabaseNonceStore(database)
