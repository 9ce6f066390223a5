"""The runbooks' load generators (scripts/load_test_inference.py, scripts/simulate_canary_load.py),
given values they cannot use, refuse them before sending anything: exit 2 and one line on
stderr, never a traceback and never a run that sends nothing and reports success."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LOAD_TEST = ROOT / "scripts" / "load_test_inference.py"
# a loopback port nothing listens on: a run that gets as far as sending fails fast
TARGET = "http://127.0.0.1:1"


def _script(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "API_KEY": "k", "COLUMNS": "80"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr
    assert result.stdout == ""  # no report: nothing was sent


@pytest.mark.parametrize(
    ("qps", "duration"),
    [("nan", "1"), ("inf", "1"), ("1", "inf"), ("1", "nan"), ("1e308", "1e308")],
)
def test_load_test_refuses_numbers_that_are_not_finite(qps: str, duration: str) -> None:
    _refused(_script(LOAD_TEST, "--url", TARGET, "--qps", qps, "--duration", duration), "finite")


def test_load_test_refuses_a_run_of_no_request() -> None:
    # 0.001 requests a second for one second: nothing would be sent, and exit 0 said all went well
    _refused(_script(LOAD_TEST, "--url", TARGET, "--qps", "0.001", "--duration", "1"), "no request")


@pytest.mark.parametrize(
    "url", ["http://[::1", "ftp://127.0.0.1:1", "http://", "127.0.0.1:1", "http:///infer"]
)
def test_load_test_refuses_a_url_it_cannot_send_to(url: str) -> None:
    # with --allow-remote too: the URL is not refused as remote but as no http(s) URL at all
    for remote in ([], ["--allow-remote"]):
        result = _script(LOAD_TEST, "--url", url, "--qps", "1", "--duration", "1", *remote)
        _refused(result, "http(s) URL")


def test_load_test_says_a_long_url_is_remote_on_one_line() -> None:
    url = "http://203.0.113.7/" + "a" * 120 + "/[bold]x[/bold]"
    result = _script(LOAD_TEST, "--url", url, "--qps", "1", "--duration", "1")
    _refused(result, url, "--allow-remote")


CANARY = ROOT / "scripts" / "simulate_canary_load.py"


@pytest.mark.parametrize(
    "option", [("--qps", "inf"), ("--qps", "nan"), ("--duration", "inf"), ("--timeout", "nan")]
)
def test_canary_load_refuses_numbers_that_are_not_finite(option: tuple[str, str]) -> None:
    result = _script(CANARY, "--url", TARGET, "--no-progress", "--max-requests", "1", *option)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert f"argument {option[0]}: must be a finite number > 0" in result.stderr
    assert result.stdout == ""


def test_canary_load_caps_a_product_past_the_largest_float_and_says_why_it_failed() -> None:
    # 1e308 a second for 1e308 seconds: --max-requests (here one request) bounds it; the one
    # request finds nothing listening, said in one line however long the URL
    url = f"{TARGET}/" + "a" * 100 + "/[bold]x[/bold]"
    result = _script(
        CANARY, "--url", url, "--no-progress", "--json", "--qps", "1e308", "--duration", "1e308",
        "--max-requests", "1",
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    assert result.stderr == f"error: no request got an HTTP answer from {url}/infer\n"
    assert '"planned": 1' in result.stdout
