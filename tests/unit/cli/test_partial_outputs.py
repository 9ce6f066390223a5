"""A command whose output file cannot be written in full leaves no part of it behind: the file
it names is either whole or as it was before (a full disk, simulated by a file-size limit)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from aegis.cli.main import run
from tests.support.processes import run_on_a_full_disk

ROOT = Path(__file__).resolve().parents[3]
POLICY = """
id: demo-restarts-{n}
description: {text}
effect: allow
subjects: ["role:operator"]
actions: ["restart_deployment"]
resources: {{namespaces: ["demo-{n}"], names: ["*"]}}
"""
LIMIT = 64 * 1024  # above what opening the SQLite database writes, below the bundle's size


@pytest.fixture
def aegis_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    env = {
        "AEGIS_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite+pysqlite:///{tmp_path / 'aegis.db'}",
        "LOG_JSON": "false",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_a_policy_export_that_fails_part_way_leaves_the_old_bundle_whole(
    aegis_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "policies").mkdir()
    for n in range(200):
        (tmp_path / "policies" / f"{n}.yaml").write_text(POLICY.format(n=n, text="x" * 400))
    assert run(["policy", "sync", str(tmp_path / "policies"), "--yes"]) == 0
    bundle = tmp_path / "out" / "policies.bundle.tar"
    bundle.parent.mkdir()
    assert run(["policy", "export", "--serial", "1", "--out", str(bundle)]) == 0
    before = bundle.read_bytes()
    assert len(before) > LIMIT  # the limit cuts the second export short

    result = run_on_a_full_disk(
        [sys.executable, "-m", "aegis", "policy", "export", "--serial", "2", "--out", str(bundle)],
        limit=LIMIT,
        cwd=tmp_path,
        env={**os.environ, **aegis_env, "PYTHONPATH": str(ROOT / "src")},
    )

    assert result.returncode == 1
    assert result.stderr == f"error: cannot write {bundle}: File too large\n"
    assert bundle.read_bytes() == before
    assert sorted(p.name for p in bundle.parent.iterdir()) == [bundle.name]
