"""`make test`'s prerequisite check: under CI=true a missing database fails, naming it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.services import free_port

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "ci" / "prereqs.sh"


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_ci_fails_naming_postgresql_when_it_is_not_there() -> None:
    result = _run(CI="true", AEGIS_TEST_PG_PORT=str(free_port()))
    assert result.returncode == 1
    assert "error: CI=true requires PostgreSQL" in result.stdout


def test_outside_ci_a_missing_redis_is_reported_but_not_fatal() -> None:
    result = _run(CI="false", AEGIS_TEST_REDIS_PORT=str(free_port()))
    assert result.returncode == 0
    assert "Redis is not reachable" in result.stdout
