"""Rate limits that never fail open.

GCRA (the generic cell rate algorithm): a key may make ``limit`` requests per ``period_s``,
smoothly, with a burst of ``limit``. The Redis store keeps one theoretical-arrival-time per key
and decides in one Lua script (one round trip, atomic, Redis's own clock). The in-process store
runs the same algorithm under a lock.

:class:`FailClosedLimiter` uses Redis when it answers and the in-process store when it does not
(same limits, per process), counting ``aegis_rate_limit_fallback_total`` and logging at most once
a minute. Without REDIS_URL the in-process store is used directly.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from aegis.core import metrics
from aegis.core.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: float


class RateLimitStore(Protocol):
    name: str

    def hit(self, key: str, *, limit: int, period_s: float) -> Verdict: ...


class MemoryStore:
    """GCRA in process memory. Real, used whenever Redis is not configured or not reachable."""

    name = "memory"

    def __init__(self, max_keys: int = 100_000) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def hit(self, key: str, *, limit: int, period_s: float) -> Verdict:
        emission = period_s / limit
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat.get(key, now), now)
            # as (limit - 1) intervals: ``tat + emission - limit * emission`` rounds above ``tat``
            # for some clock readings, which refused the first request of a limit of one
            allow_at = tat - (limit - 1) * emission
            if now < allow_at:
                return Verdict(False, allow_at - now)
            self._tat[key] = tat + emission
            if len(self._tat) > self._max_keys:
                self._evict(now)
            return Verdict(True, 0.0)

    def _evict(self, now: float) -> None:
        for stale in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[stale]


# KEYS[1]: key. ARGV: emission interval (µs), burst (requests). Returns {allowed, retry_after_µs}.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + emission - burst * emission
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + emission
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
"""


class RedisStore:
    name = "redis"

    def __init__(self, url: str, *, prefix: str = "aegis:rl:", timeout_s: float = 0.25) -> None:
        import redis

        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._script = self._client.register_script(GCRA_LUA)
        self._prefix = prefix

    def hit(self, key: str, *, limit: int, period_s: float) -> Verdict:
        emission_us = int(period_s * 1_000_000 / limit)
        allowed, retry_us = self._script(keys=[self._prefix + key], args=[emission_us, limit])
        return Verdict(bool(allowed), int(retry_us) / 1_000_000)


class FailClosedLimiter:
    """Redis first; the in-process store whenever Redis errors. Never allows by default."""

    LOG_EVERY_S = 60.0

    def __init__(self, primary: RateLimitStore | None, fallback: MemoryStore | None = None) -> None:
        self.primary = primary
        self.fallback = fallback or MemoryStore()
        self._last_log = 0.0

    def hit(self, key: str, *, limit: int, period_s: float, name: str) -> Verdict:
        verdict = self._decide(key, limit=limit, period_s=period_s)
        if not verdict.allowed:
            metrics.RATE_LIMIT_HITS.labels(name).inc()
        return verdict

    def _decide(self, key: str, *, limit: int, period_s: float) -> Verdict:
        if self.primary is not None:
            try:
                return self.primary.hit(key, limit=limit, period_s=period_s)
            except Exception as exc:  # any Redis failure: decide locally, never fail open
                metrics.RATE_LIMIT_FALLBACK.inc()
                now = time.monotonic()
                if now - self._last_log >= self.LOG_EVERY_S:
                    self._last_log = now
                    log.warning(
                        "rate_limit_store_unavailable",
                        store=self.primary.name,
                        error=type(exc).__name__,
                        fallback="memory",
                    )
        return self.fallback.hit(key, limit=limit, period_s=period_s)


def build_limiter(redis_url: str | None) -> FailClosedLimiter:
    return FailClosedLimiter(RedisStore(redis_url) if redis_url else None)
