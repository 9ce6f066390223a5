"""The prediction job outlives a failing pass, and logs why: the traceback once, then repeats
by name (a database down for an hour must not write a traceback a second)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aegis.core.config import Settings
from aegis.core.context import AppContext
from aegis.incidents import jobs
from tests.support.logs import json_lines


def test_a_failing_pass_is_logged_with_its_traceback_and_the_job_goes_on(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A database without Aegis's tables: every pass fails on its first query.
    settings = make_settings(database_url=f"sqlite+pysqlite:///{tmp_path / 'unmigrated.db'}")
    ctx = AppContext.build(settings, service="test")
    monkeypatch.setattr(jobs, "TICK_S", 0.01)
    failures: list[dict[str, Any]] = []

    async def scenario(written: Callable[[], tuple[str, list[dict[str, Any]]]]) -> None:
        job = asyncio.create_task(jobs.run(ctx))
        try:
            while len(failures) < 3:  # the job went on after the first failure
                assert not job.done()
                await asyncio.sleep(0.01)
                failures.extend(
                    line for line in written()[1] if line["event"] == "prediction_job_failed"
                )
        finally:
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job

    try:
        with json_lines(capsys) as written:
            asyncio.run(scenario(written))
    finally:
        ctx.close()
    line, *repeats = failures
    assert line["level"] == "error"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert "OperationalError" in line["exception"]
    assert "no such table: incidents" in line["exception"]
    for repeat in repeats:  # the same failure again: by name only
        assert repeat["level"] == "warning"
        assert repeat["repeated"] is True
        assert repeat["error"] == "OperationalError"
        assert "exception" not in repeat
