"""`aegis backup create` stopped half-way (Ctrl-C, or SIGTERM from Kubernetes or systemd), as a
separate process: one line, a non-zero exit, and neither the spool nor the artifact left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aegis.database.core import make_engine
from aegis.database.models import metadata
from tests.support.processes import clean_env

pytestmark = pytest.mark.parametrize("db_backend", ["sqlite"])
ROWS = 150_000


def _fill_audit_log(url: str) -> None:
    """Enough rows that the backup takes a while (the chain is not checked by a backup)."""
    engine = make_engine(url)
    table = metadata.tables["audit_log"]
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            for start in range(1, ROWS + 1, 10_000):
                conn.execute(
                    table.insert(),
                    [
                        {
                            "seq": seq,
                            "event_id": str(uuid.uuid4()),
                            "created_at": now,
                            "category": "system",
                            "event_type": "test.bulk",
                            "actor": "t",
                            "resource": "r",
                            "outcome": "ok",
                            "data": '{"noise":"' + os.urandom(96).hex() + '"}',
                            "prev_hash": "0" * 64,
                            "entry_hash": "0" * 64,
                        }
                        for seq in range(start, min(start + 10_000, ROWS + 1))
                    ],
                )
    finally:
        engine.dispose()


@pytest.fixture
def big_env(target_url: str, tmp_path: Path) -> dict[str, str]:
    _fill_audit_log(target_url)
    (tmp_path / "tmp").mkdir()
    return clean_env(
        AEGIS_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=target_url,
        BACKUP_DIR=str(tmp_path / "backups"),
        BACKUP_ENCRYPTION_KEY="backup-key-" + "k" * 40,
        LOG_JSON="false",
        TMPDIR=str(tmp_path / "tmp"),  # where the spool goes
    )


def _spooling(tmp: Path) -> bool:
    return any(tmp.glob("aegis-backup-*/audit_log.jsonl"))


def _archiving(tmp: Path) -> bool:
    """The audit log is being added to the artifact: part of it is in the tar/gzip buffers."""
    return _spooling(tmp) and any(
        p.stat().st_size > 0 for p in tmp.glob("aegis-backup-*/aegis-*.tar.gz*")
    )


def _interrupt(env: dict[str, str], when: Callable[[Path], bool], signum: int) -> tuple[int, str]:
    tmp = Path(env["TMPDIR"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "aegis", "backup", "create"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not when(tmp):
            assert proc.poll() is None, f"finished before it could be interrupted: {proc.stderr}"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_sigterm_while_spooling_cleans_up_and_says_so(big_env: dict[str, str]) -> None:
    code, err = _interrupt(big_env, _spooling, signal.SIGTERM)
    assert (code, err.strip()) == (143, "interrupted (SIGTERM)")
    assert list(Path(big_env["TMPDIR"]).iterdir()) == []  # was: the plaintext spool, 100 MB
    assert not Path(big_env["BACKUP_DIR"]).exists() or not any(
        Path(big_env["BACKUP_DIR"]).iterdir()
    )


def test_ctrl_c_while_archiving_is_one_line_without_a_traceback(big_env: dict[str, str]) -> None:
    env = {k: v for k, v in big_env.items() if k != "BACKUP_ENCRYPTION_KEY"}
    code, err = _interrupt(env, _archiving, signal.SIGINT)
    # was: "Exception ignored in: <function _Stream.__del__ ...> ValueError: write to closed file"
    assert (code, err.strip()) == (130, "interrupted (SIGINT)")
    assert list(Path(env["TMPDIR"]).iterdir()) == []
