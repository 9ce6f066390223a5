"""What the services write to their logs: no secret, however deep in a field it sits."""

from __future__ import annotations

from typing import Any

import pytest

from aegis.core.logging import get_logger
from tests.support.logs import json_lines


def test_a_secret_nested_in_a_field_is_never_written(capsys: pytest.CaptureFixture[str]) -> None:
    headers = {"Authorization": "Bearer s3cr3t-header", "Accept": "application/json"}
    with json_lines(capsys) as written:
        get_logger("test.redaction").info(
            "calling_out",
            headers=headers,
            settings={"api_key": "s3cr3t-key", "retries": 3, "key_id": "k-1"},
            attempts=[{"db": {"PASSWORD": "s3cr3t-password"}}, ("token", "visible")],
        )
        raw, lines = written()
    assert "s3cr3t" not in raw
    (line,) = lines
    assert line["headers"] == {"Authorization": "***", "Accept": "application/json"}
    assert line["settings"] == {"api_key": "***", "retries": 3, "key_id": "k-1"}
    assert line["attempts"] == [{"db": {"PASSWORD": "***"}}, ["token", "visible"]]
    assert headers["Authorization"] == "Bearer s3cr3t-header"  # the caller's dict is untouched


def _nested(depth: int, leaf: dict[str, Any]) -> dict[str, Any]:
    for _ in range(depth):
        leaf = {"inner": leaf}
    return leaf


def test_odd_values_are_logged_and_never_leak_or_crash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cyclic: dict[str, Any] = {"token": "s3cr3t-cyclic"}
    cyclic["self"] = cyclic
    with json_lines(capsys) as written:
        get_logger("test.redaction").info(
            "odd",
            numbered={1: "one", None: "none", ("a", "b"): "pair"},
            cyclic=cyclic,
            deep=_nested(10_000, {"secret": "s3cr3t-deep"}),
            wide=[{"n": i} for i in range(50_000)] + [{"password": "s3cr3t-wide"}],
        )
        raw, lines = written()
    assert "s3cr3t" not in raw
    (line,) = lines
    assert line["event"] == "odd"
    assert line["numbered"]["1"] == "one"


def test_a_jobs_failures_carry_the_traceback_when_they_start_or_change(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aegis.core.logging import JobFailures, get_logger
    from tests.support.logs import json_lines

    def boom(message: str) -> ValueError:
        try:
            raise ValueError(message)
        except ValueError as exc:
            return exc

    with json_lines(capsys) as written:
        failures = JobFailures(get_logger("test.job"), "test_job_failed")
        failures.failed(boom("database down"))
        failures.failed(boom("database down"))
        failures.failed(boom("disk full"))  # another failure: its own traceback
        failures.succeeded()
        failures.failed(boom("disk full"))  # failing again after a success: the traceback again
        lines = [line for line in written()[1] if line["event"] == "test_job_failed"]
    assert [(line["level"], "exception" in line) for line in lines] == [
        ("error", True),
        ("warning", False),
        ("error", True),
        ("error", True),
    ]
    assert "ValueError: database down" in lines[0]["exception"]
    assert lines[1]["repeated"] is True
    assert "ValueError: disk full" in lines[2]["exception"]
