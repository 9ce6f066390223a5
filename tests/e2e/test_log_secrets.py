"""What the backend writes to its log when a request fails unexpectedly: never the request's
secrets, in either log format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aegis.database.core import Database
from tests.support import factories, services
from tests.support.processes import aegis_serve, wait_port
from tests.support.proxy import TcpProxy

PASSWORD = "unseen-login-password-42"  # the secret the log must not hold


@pytest.fixture
def proxied(db_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """The test's PostgreSQL database reached through a proxy the test can cut."""
    name = db_url.rsplit("/", 1)[1]
    with TcpProxy(services.PG_HOST, services.PG_PORT) as proxy:
        yield proxy, f"postgresql+psycopg://{services.PG_USER}@127.0.0.1:{proxy.port}/{name}"


@pytest.mark.parametrize("log_json", ["true", "false"], ids=["json", "console"])
@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_a_login_failing_on_the_database_leaves_no_password_in_the_log(
    proxied: tuple[TcpProxy, str], database: Database, tmp_path: Path, log_json: str
) -> None:
    proxy, url = proxied
    name = factories.user(database, "viewer", password=PASSWORD)
    port = services.free_port()
    env = {"AEGIS_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": url, "LOG_JSON": log_json}
    with aegis_serve("backend", tmp_path, port, **env) as base:
        wait_port(port, timeout_s=60)
        proxy.cut()
        response = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": name, "password": PASSWORD},
            timeout=60,
        )
        proxy.restore()
    log = (tmp_path / "backend.log").read_text(errors="replace")
    assert response.status_code >= 500 and "unhandled_error" in log
    assert "Traceback (most recent call last)" in log  # what an operator needs to find the fault
    assert PASSWORD not in log
