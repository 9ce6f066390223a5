"""The client address the limits count and the audit records: the connection's peer, unless
the peer is a proxy named in TRUSTED_PROXIES."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from aegis.database.core import Database
from tests.support.factories import audit_events
from tests.support.processes import aegis_serve, wait_port
from tests.support.services import free_port

# One login a minute per client address (and per username: each attempt names another user).
_ENV = {"RATE_LIMIT_LOGIN_PER_MINUTE": "1"}


def _fail_logins(url: str, count: int) -> list[int]:
    """``count`` wrong logins, each naming another client in X-Forwarded-For."""
    return [
        httpx.post(
            f"{url}/api/v1/auth/login",
            json={"username": f"nobody{i}", "password": "wrong-password"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
            timeout=10,
        ).status_code
        for i in range(count)
    ]


def test_x_forwarded_for_from_an_untrusted_peer_does_not_escape_the_login_limit(
    tmp_path: Path, db_url: str, database: Database
) -> None:
    port = free_port()
    env = {**_ENV, "AEGIS_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": db_url}
    with aegis_serve("backend", tmp_path, port, **env) as url:
        wait_port(port, timeout_s=60)
        codes = _fail_logins(url, 3)
    assert codes == [401, 429, 429]  # one login a minute per client address
    recorded = {json.loads(e.data)["ip"] for e in audit_events(database, "authentication.failed")}
    assert recorded == {"127.0.0.1"}


def test_a_trusted_proxy_names_the_client(tmp_path: Path, db_url: str, database: Database) -> None:
    port = free_port()
    env = {
        **_ENV,
        "AEGIS_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": db_url,
        "TRUSTED_PROXIES": "127.0.0.1",
    }
    with aegis_serve("backend", tmp_path, port, **env) as url:
        wait_port(port, timeout_s=60)
        codes = _fail_logins(url, 3)
    assert codes == [401, 401, 401]
    recorded = [json.loads(e.data)["ip"] for e in audit_events(database, "authentication.failed")]
    assert recorded == [f"203.0.113.{i}" for i in range(3)]
