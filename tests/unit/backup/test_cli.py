"""`aegis backup create|list|prune|restore|drill` and the runbook's script names, through the
real CLI (SQLite here: the dialect work is covered in test_backup_restore.py)."""

from __future__ import annotations

import io
import runpy
import shutil
import sys
from pathlib import Path

import pytest

from aegis.cli.main import run
from aegis.database.core import Database
from tests.support import factories
from tests.unit.backup.support import KEY, dump, local_path, repack

pytestmark = pytest.mark.parametrize("db_backend", ["sqlite"])
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source_url: str) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", source_url)
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("LOG_JSON", "false")
    return tmp_path / "backups"


def _create(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert run(["backup", "create", *args]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_create_list_drill_and_restore(
    env: Path, capsys: pytest.CaptureFixture[str], source_url: str, target_url: str
) -> None:
    uri = _create(capsys)
    assert uri.startswith(env.resolve().as_uri() + "/aegis-") and local_path(uri).exists()
    assert run(["backup", "list"]) == 0
    assert uri in capsys.readouterr().out
    assert run(["backup", "drill"]) == 0
    report = capsys.readouterr().out
    assert "PASSED" in report and "RTO" in report
    assert run(["backup", "restore", uri, "--to", target_url, "--yes"]) == 0
    assert "audit chain intact" in capsys.readouterr().out
    assert dump(target_url)["policies"] == dump(source_url)["policies"]


def test_encrypted_backup_needs_the_key_to_restore(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    target_url: str,
) -> None:
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", KEY)
    uri = _create(capsys)
    assert uri.endswith(".enc")
    monkeypatch.delenv("BACKUP_ENCRYPTION_KEY")
    assert run(["backup", "restore", uri, "--to", target_url, "--yes"]) == 1
    assert "set BACKUP_ENCRYPTION_KEY" in capsys.readouterr().err


def test_restore_asks_before_writing(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    source_url: str,
    target_url: str,
) -> None:
    uri = _create(capsys)
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert run(["backup", "restore", uri, "--to", target_url]) == 130
    assert not any(dump(target_url).values())
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert run(["backup", "restore", uri, "--to", source_url, "--force-clean"]) == 130
    assert "DELETES every Aegis row" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert run(["backup", "restore", uri, "--to", target_url]) == 0


def test_restore_prompt_hides_a_password_given_as_a_query_parameter(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = "postgresql+psycopg://aegis@127.0.0.1:1/aegis?password=hunter2"
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert run(["backup", "restore", (env / "b.tar.gz").as_uri(), "--to", target]) == 130
    out = capsys.readouterr().out
    assert "aegis@127.0.0.1:1/aegis?password=***" in out and "hunter2" not in out


@pytest.mark.parametrize("location", ["s3://bucket:abc/db", "file:///tmp/a%00b"])
def test_list_from_a_malformed_url_is_one_clear_error(
    env: Path, capsys: pytest.CaptureFixture[str], location: str
) -> None:
    assert run(["backup", "list", "--from", location]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and location in err and "unexpected" not in err


def test_restore_into_a_database_in_use_is_refused(
    env: Path, capsys: pytest.CaptureFixture[str], source_url: str
) -> None:
    uri = _create(capsys)
    assert run(["backup", "restore", uri, "--yes"]) == 1  # DATABASE_URL: the live database
    assert "already holds Aegis rows" in capsys.readouterr().err


def test_restore_of_a_missing_or_damaged_backup_touches_no_target(
    env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "new.db"
    missing = tmp_path / "aegis-20260101T000000Z-0123abcd.tar.gz"
    assert run(["backup", "restore", str(missing), "--to", f"sqlite:///{target}", "--yes"]) == 1
    assert "no backup at" in capsys.readouterr().err
    assert not target.exists()  # was: an empty SQLite file, created before the fetch
    damaged = local_path(_create(capsys))
    damaged.write_bytes(damaged.read_bytes()[:-30])
    assert run(["backup", "restore", str(damaged), "--to", f"sqlite:///{target}", "--yes"]) == 1
    assert "truncated" in capsys.readouterr().err
    assert not target.exists()


def test_drill_exits_1_when_the_backup_is_damaged(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = _create(capsys)
    path = local_path(uri)
    path.write_bytes(path.read_bytes()[:-30])
    assert run(["backup", "drill", uri]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_drill_into_a_named_sqlite_file_removes_it(
    env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _create(capsys)
    scratch = tmp_path / "scratch.db"
    for _ in range(2):  # was: the second drill failed, the first one's copy was still there
        assert run(["backup", "drill", "--scratch-url", f"sqlite:///{scratch}"]) == 0
        assert f"scratch     sqlite:///{scratch} (removed)" in capsys.readouterr().out
        assert not list(tmp_path.glob("scratch.db*"))  # nor its -journal, -wal or -shm


def test_drill_keeps_a_named_sqlite_file_only_with_keep_and_never_reuses_one(
    env: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _create(capsys)
    scratch = tmp_path / "scratch.db"
    assert run(["backup", "drill", "--scratch-url", f"sqlite:///{scratch}", "--keep"]) == 0
    assert "(kept)" in capsys.readouterr().out
    kept = scratch.read_bytes()
    assert run(["backup", "drill", "--scratch-url", f"sqlite:///{scratch}"]) == 1
    assert "names an existing file" in capsys.readouterr().err
    assert scratch.read_bytes() == kept  # neither restored into nor deleted


def test_prune_and_an_empty_list(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["backup", "list"]) == 0
    assert "no backups" in capsys.readouterr().err
    _create(capsys, "--no-prune")
    assert run(["backup", "prune"]) == 0
    assert "0 backup(s)" in capsys.readouterr().err  # the newest is never deleted


@pytest.mark.parametrize("command", ["list", "prune"])
def test_a_folder_named_to_read_from_is_never_created(
    env: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    missing = env / "typo" / "backups"
    assert run(["backup", command, "--from", str(missing)]) == 1
    assert f"no folder {missing}" in capsys.readouterr().err
    assert not (env / "typo").exists()


def _script(name: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(ROOT / "scripts" / "backup" / name), run_name="__main__")
    return int(exited.value.code or 0)


def test_runbook_script_names(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    target_url: str,
) -> None:
    other = tmp_path / "elsewhere"
    assert _script("backup_db.py", ["--to", str(other)], monkeypatch) == 0
    uri = capsys.readouterr().out.strip().splitlines()[-1]
    assert uri.startswith(other.resolve().as_uri())
    assert _script("restore_db.py", [uri, "--to", target_url, "--yes"], monkeypatch) == 0
    assert dump(target_url)["users"]


def test_restore_exits_1_when_the_restored_audit_chain_is_broken(
    env: Path, capsys: pytest.CaptureFixture[str], target_url: str
) -> None:
    uri = _create(capsys)
    repack(
        local_path(uri),
        "audit_log",
        lambda data: data.replace(b'"outcome":"ok"', b'"outcome":"no"', 1),
        fix_manifest=True,
    )
    assert run(["backup", "restore", uri, "--to", target_url, "--yes"]) == 1
    assert "FAILED: audit chain of the restored database" in capsys.readouterr().out


# --- --actor: who the audit log records ---------------------------------------------------------


def _actors(url: str, event_type: str) -> list[str]:
    database = Database(url)
    try:
        return [e.actor for e in factories.audit_events(database, event_type)]
    finally:
        database.dispose()


def test_backup_commands_record_the_named_admin(
    env: Path, capsys: pytest.CaptureFixture[str], source_url: str, target_url: str
) -> None:
    uri = _create(capsys, "--actor", "alice")
    shutil.copyfile(local_path(uri), env / "aegis-20200101T000000Z-0123abcd.tar.gz")
    assert run(["backup", "prune", "--actor", "alice"]) == 0
    assert run(["backup", "drill", uri, "--actor", "alice"]) == 0
    assert run(["backup", "restore", uri, "--to", target_url, "--yes", "--actor", "alice"]) == 0

    assert _actors(source_url, "backup.created") == ["alice"]
    assert _actors(source_url, "backup.pruned") == ["alice"]
    assert _actors(source_url, "backup.drill") == ["alice"]
    assert _actors(target_url, "backup.restored") == ["alice"]


def test_backup_commands_without_actor_are_still_the_local_operators(
    env: Path, capsys: pytest.CaptureFixture[str], source_url: str
) -> None:
    _create(capsys)

    assert _actors(source_url, "backup.created") == ["cli:local-operator"]


@pytest.mark.parametrize(
    ("actor", "event_type"),
    [("nobody", "authentication.failed"), ("bob", "access.denied")],  # bob: a disabled viewer
)
def test_a_backup_by_an_actor_who_is_not_an_admin_is_refused_and_audited(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    source_url: str,
    target_url: str,
    actor: str,
    event_type: str,
) -> None:
    uri = _create(capsys)
    made = sorted(env.iterdir())

    assert run(["backup", "create", "--actor", actor]) == 1
    assert run(["backup", "drill", uri, "--actor", actor]) == 1
    assert run(["backup", "restore", uri, "--to", target_url, "--yes", "--actor", actor]) == 1

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert sorted(env.iterdir()) == made
    assert not any(dump(target_url).values())
    assert _actors(source_url, "backup.created") == ["cli:local-operator"]
    assert _actors(source_url, "backup.drill") == []
    refusals = Database(source_url)
    try:
        refused = factories.audit_events(refusals, event_type)
    finally:
        refusals.dispose()
    assert [(e.actor, e.outcome) for e in refused] == [(actor, "denied")] * 3
    assert [e.resource for e in refused] == [
        "aegis backup create",
        f"aegis backup drill {uri}",
        f"aegis backup restore {uri}",
    ]


def test_a_restore_into_the_database_that_holds_the_users_refuses_an_actor(
    env: Path, capsys: pytest.CaptureFixture[str], source_url: str
) -> None:
    """The users --actor is checked against are DATABASE_URL's, which this restore replaces."""
    uri = _create(capsys)
    before = dump(source_url)

    assert run(["backup", "restore", uri, "--yes", "--force-clean", "--actor", "alice"]) == 1

    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--actor" in err and "--to" in err
    assert dump(source_url) == before
