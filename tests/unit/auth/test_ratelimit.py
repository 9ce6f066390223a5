"""Rate limits: the same GCRA behaviour on Redis and in process, and never failing open."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aegis.auth.ratelimit import FailClosedLimiter, MemoryStore, RateLimitStore, RedisStore
from aegis.backend_app import create_app
from aegis.core import metrics
from aegis.core.config import Settings
from tests.conftest import require
from tests.support import processes


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[RateLimitStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        url = request.getfixturevalue("redis_url")
        yield RedisStore(url, prefix=f"aegis-test:{uuid.uuid4().hex}:")


def test_allows_exactly_the_limit_then_refuses_with_retry_after(store: RateLimitStore) -> None:
    verdicts = [store.hit("k", limit=5, period_s=60) for _ in range(6)]
    assert [v.allowed for v in verdicts] == [True] * 5 + [False]
    assert 0 < verdicts[-1].retry_after_s <= 12.5  # one emission interval is 12 s


def test_a_limit_of_one_allows_the_first_request_of_every_key(store: RateLimitStore) -> None:
    first = [store.hit(f"one-{i}", limit=1, period_s=60).allowed for i in range(200)]
    second = [store.hit(f"one-{i}", limit=1, period_s=60).allowed for i in range(200)]
    assert all(first) and not any(second)


def test_keys_are_independent(store: RateLimitStore) -> None:
    for _ in range(3):
        store.hit("a", limit=3, period_s=60)
    assert not store.hit("a", limit=3, period_s=60).allowed
    assert store.hit("b", limit=3, period_s=60).allowed


def test_capacity_returns_as_time_passes(store: RateLimitStore) -> None:
    import time

    # one emission interval is 0.5 s: a pause of the test under load shorter than that cannot
    # let the third hit through, and waiting the Retry-After it names is always enough
    for _ in range(2):
        store.hit("t", limit=2, period_s=1.0)
    refused = store.hit("t", limit=2, period_s=1.0)
    assert not refused.allowed and 0 < refused.retry_after_s <= 0.5
    time.sleep(refused.retry_after_s + 0.02)
    assert store.hit("t", limit=2, period_s=1.0).allowed


def test_redis_dying_mid_stream_does_not_fail_open(tmp_path: Path) -> None:
    require(shutil.which("redis-server") is not None, "redis-server binary is not installed")
    with processes.private_redis(tmp_path) as (url, proc):
        limiter = FailClosedLimiter(RedisStore(url))
        before = metrics.RATE_LIMIT_FALLBACK._value.get()
        assert limiter.hit("ip", limit=3, period_s=60, name="login").allowed
        proc.kill()
        proc.wait()
        results = [limiter.hit("ip", limit=3, period_s=60, name="login").allowed for _ in range(5)]
    assert results == [True, True, True, False, False]  # same limit, now per process
    assert metrics.RATE_LIMIT_FALLBACK._value.get() >= before + 5


def test_login_is_limited_per_ip_with_429_and_retry_after(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    settings = make_settings(database_url=db_url, rate_limit_login_per_minute=3)
    with TestClient(create_app(settings)) as client:
        codes = [
            client.post(
                "/api/v1/auth/login", json={"username": f"user{i}", "password": "x"}
            ).status_code
            for i in range(4)
        ]
        last = client.post("/api/v1/auth/login", json={"username": "z", "password": "x"})
    assert codes == [401, 401, 401, 429]
    assert last.status_code == 429
    assert int(last.headers["Retry-After"]) >= 1
    assert last.json()["error"]["code"] == "rate_limited"


def test_an_ipv6_client_is_limited_per_64_network_and_audited_with_its_address(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    """One host holds a whole /64 and may send from any address of it: the per-IP limits count
    the /64, or each new address would bring a fresh budget. Audit records keep the address."""
    import json

    from aegis.database.core import Database
    from tests.support import factories

    app = create_app(make_settings(database_url=db_url, rate_limit_login_per_minute=1))
    clients = ["2001:db8::1", "2001:db8::2", "2001:db8:0:1::1", "::ffff:192.0.2.1", "192.0.2.1"]
    codes = []
    with TestClient(app):
        for i, address in enumerate(clients):
            client = TestClient(app, client=(address, 50000))
            login = {"username": f"user{i}", "password": "x"}
            codes.append(client.post("/api/v1/auth/login", json=login).status_code)
    database = Database(db_url)
    failures = factories.audit_events(database, "authentication.failed")
    database.dispose()
    assert codes == [401, 429, 401, 401, 429]  # the second address of a /64; IPv4 as mapped
    assert [json.loads(e.data)["ip"] for e in failures] == [
        "2001:db8::1",
        "2001:db8:0:1::1",
        "::ffff:192.0.2.1",
    ]


def test_api_limit_is_per_user_over_redis(
    make_settings: Callable[..., Settings], db_url: str, redis_url: str
) -> None:
    from aegis.database.core import Database
    from tests.support import factories

    settings = make_settings(database_url=db_url, redis_url=redis_url, rate_limit_api_per_minute=4)
    database = Database(db_url)
    alice, bob = factories.user(database, "viewer"), factories.user(database, "viewer")
    database.dispose()
    with TestClient(create_app(settings)) as client:
        a = factories.bearer(factories.login(client, alice))
        b = factories.bearer(factories.login(client, bob))
        alice_codes = [client.get("/api/v1/auth/me", headers=a).status_code for _ in range(5)]
        bob_code = client.get("/api/v1/auth/me", headers=b).status_code
    assert alice_codes == [200, 200, 200, 200, 429]
    assert bob_code == 200


def test_failed_authentications_past_the_limit_are_429_and_not_audited(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    """A caller looping on a bad token gets its first failures audited, then 429s that cost
    the audit chain nothing; a signed-in user from the same address is not held back."""
    from aegis.database.core import Database
    from tests.support import factories

    settings = make_settings(database_url=db_url, rate_limit_api_per_minute=3)
    database = Database(db_url)
    alice = factories.user(database, "viewer")
    try:
        with TestClient(create_app(settings)) as client:
            signed_in = factories.bearer(factories.login(client, alice))
            bad = {"Authorization": "Bearer not-a-token"}
            codes = [client.get("/api/v1/incidents", headers=bad).status_code for _ in range(5)]
            refused = client.get("/api/v1/incidents", headers={})
            alice_code = client.get("/api/v1/auth/me", headers=signed_in).status_code
        audited = factories.audit_events(database, "authentication.failed")
    finally:
        database.dispose()

    assert codes == [401, 401, 401, 429, 429]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert len(audited) == 3
    assert alice_code == 200


def test_the_alertmanager_webhook_shares_the_failed_authentication_limit(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    from aegis.database.core import Database
    from tests.support import factories
    from tests.support.alerts import alert, deliver

    settings = make_settings(database_url=db_url, rate_limit_api_per_minute=2)
    with TestClient(create_app(settings)) as client:
        codes = [deliver(client, "not-the-token", alert()).status_code for _ in range(3)]
        good = deliver(client, settings.secret("alert_webhook_token"), alert())
    database = Database(db_url)
    try:
        audited = factories.audit_events(database, "authentication.failed")
    finally:
        database.dispose()

    assert codes == [401, 401, 429]
    assert len(audited) == 2
    assert good.status_code == 200  # Alertmanager itself is not held back
