"""The runbooks' backup and restore steps as an operator runs them: the script names, the shell
wrappers and the `aegis` CLI as separate processes, an encrypted backup in S3 (moto's real
S3-protocol server on loopback), restores into a clean PostgreSQL database and into SQLite, and
the restore drill on a PostgreSQL scratch database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aegis.database import migrate
from aegis.database.core import Database, make_engine
from tests.conftest import require
from tests.support import services
from tests.unit.backup.support import KEY, build_settings, dump, seed
from tests.unit.storage.moto_s3 import MotoS3

ROOT = Path(__file__).resolve().parents[2]
AEGIS = str(Path(sys.executable).with_name("aegis"))


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        require(False, "moto[server] is not installed")
    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture
def pg_databases(pg_admin_url: str) -> Iterator[list[str]]:
    """Names of PostgreSQL databases this test creates; all dropped afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        services.drop_pg_database(name)


def _new_pg(names: list[str], *, migrated: bool) -> str:
    name = f"aegis_it_{uuid.uuid4().hex[:10]}"
    services.create_pg_database(name)
    names.append(name)
    url = services.pg_url(name)
    if migrated:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
    return url


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_backup_to_s3_restore_and_drill_as_the_runbooks_say(
    s3: MotoS3, pg_admin_url: str, pg_databases: list[str], tmp_path: Path
) -> None:
    source = _new_pg(pg_databases, migrated=True)
    database = Database(source)
    seed(database, build_settings(tmp_path / "seed"))
    database.dispose()
    bucket = s3.bucket()
    env = {
        **os.environ,
        **s3.env,
        "AEGIS_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": source,
        "BACKUP_ENCRYPTION_KEY": KEY,
        "BACKUP_URL": f"s3://{bucket}/db",
        "LOG_JSON": "false",
        "AEGIS": AEGIS,
    }
    # A signed audit checkpoint, so the drill checks the restored chain against it.
    _run([AEGIS, "audit", "checkpoint"], env)

    # Runbook 002 item 6: scripts/backup/backup_db.py stores the dump in the object store.
    uri = _run([sys.executable, "scripts/backup/backup_db.py", "--to", f"s3://{bucket}/db"], env)
    artifact = uri.stdout.strip().splitlines()[-1]
    assert artifact.startswith(f"s3://{bucket}/db/aegis-") and artifact.endswith(".tar.gz.enc")
    # Runbook 004 section 8: infrastructure/scripts/backup.sh (BACKUP_URL from the environment).
    _run(["bash", "infrastructure/scripts/backup.sh"], env)
    listed = _run([AEGIS, "backup", "list", "--from", f"s3://{bucket}/db"], env).stdout
    assert artifact in listed and len(listed.strip().splitlines()) == 2

    # Runbook 002 item 6: scripts/backup/restore_db.py <s3://bucket/path> into a clean staging DB.
    staging = _new_pg(pg_databases, migrated=False)
    restored = _run(
        [sys.executable, "scripts/backup/restore_db.py", artifact, "--to", staging, "--yes"], env
    )
    assert "audit chain intact" in restored.stdout
    before, after = dump(source), dump(staging)
    assert {t: rows for t, rows in after.items() if t != "audit_log"} == {
        t: rows for t, rows in before.items() if t != "audit_log"
    }

    # infrastructure/scripts/restore.sh: the newest backup, here into SQLite (cross-dialect).
    sqlite_target = f"sqlite+pysqlite:///{tmp_path / 'restored.db'}"
    _run(["bash", "infrastructure/scripts/restore.sh", "--to", sqlite_target, "--yes"], env)
    assert dump(sqlite_target)["users"] == before["users"]

    # Runbook 000 step H: the restore drill, on a throw-away PostgreSQL database.
    drill = _run([AEGIS, "backup", "drill", artifact, "--scratch-url", pg_admin_url], env).stdout
    assert "PASSED" in drill and "1 signed checkpoint(s) match" in drill, drill
