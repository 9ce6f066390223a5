"""SIGTERM stops an `aegis` command the way Ctrl-C does: the command unwinds (its cleanup runs),
then one line and exit 128 + the signal number, never a silent kill or a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import clean_env


@pytest.mark.parametrize(
    ("signum", "line", "code"),
    [(signal.SIGTERM, "interrupted (SIGTERM)", 143), (signal.SIGINT, "interrupted (SIGINT)", 130)],
)
def test_a_stop_signal_at_a_prompt_is_one_line(
    tmp_path: Path, signum: int, line: str, code: int
) -> None:
    target = tmp_path / "target.db"
    env = clean_env(AEGIS_DATA_DIR=str(tmp_path / "data"), LOG_JSON="false")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aegis",
            "backup",
            "restore",
            "x.tar.gz",
            "--to",
            f"sqlite:///{target}",
        ],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.read(len("Restore ")) == "Restore "  # waiting for an answer now
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err.strip()) == (code, line)  # SIGTERM was: killed, exit -15
    assert not target.exists()
