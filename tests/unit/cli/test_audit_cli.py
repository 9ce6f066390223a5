"""`aegis audit verify|checkpoint|export` and `aegis user ...` through the real CLI."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from aegis.audit import service as audit_service
from aegis.audit.jobs import checkpoint_once
from aegis.cli.main import run
from aegis.core import metrics
from aegis.core.context import AppContext
from aegis.database.core import Database
from aegis.storage.service import open_store
from tests.support.audit import forge_tail


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("AUDIT_STORE_URL", (tmp_path / "audit-store").as_uri())
    monkeypatch.setenv("LOG_JSON", "false")
    return tmp_path


def _events(db_url: str, n: int) -> None:
    database = Database(db_url)
    with database.unit_of_work() as session:
        for i in range(n):
            audit_service.record_audit_event(
                session=session, category="system", event_type="test", actor="t", data={"i": i}
            )
    database.dispose()


def test_verify_checkpoint_and_tamper_detection(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _events(db_url, 5)
    assert run(["audit", "checkpoint"]) == 0
    capsys.readouterr()
    assert run(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("intact: 5 entries")  # only the answer on stdout
    database = Database(db_url)
    with database.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 5"))
    database.dispose()
    assert run(["audit", "verify"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_export_names_its_target_without_a_token_or_password(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"{env.as_uri()}/audit.jsonl?sv=2022&sig=SECRET"
    assert run(["audit", "export", "--to", target]) == 0
    out = capsys.readouterr().out
    assert out.startswith("exported 0 entries to") and "SECRET" not in out


@pytest.mark.parametrize(
    "command",
    [
        ["audit", "export", "--to", "memory://user:SECRET@x/a.jsonl"],
        ["audit", "checkpoint"],
        ["backup", "create", "--to", "memory://backups"],
        ["backup", "list", "--from", "memory://backups"],
    ],
)
def test_one_shot_commands_refuse_a_memory_store(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    # What they wrote there would be gone the moment they reported success.
    monkeypatch.setenv("AUDIT_STORE_URL", "memory://audit")
    assert run(command) == 1
    err = capsys.readouterr().err
    assert "keeps nothing once this command exits" in err and "SECRET" not in err
    # In-process callers (the services, these tests) may still use one.
    assert open_store("memory://after").list("") == []


def test_export_to_a_plain_path_writes_that_file(env: Path, db_url: str) -> None:
    _events(db_url, 2)
    target = env / "exports" / "audit.jsonl"
    assert run(["audit", "export", "--to", str(target)]) == 0
    assert len(target.read_text().splitlines()) == 2


def test_export_to_a_url_with_a_bad_port_is_one_clear_error(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["audit", "export", "--to", "s3://bucket:abc/audit.jsonl?sig=SECRET"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: invalid object store URL 's3://bucket:abc'")
    assert "SECRET" not in err


def test_export_writes_json_lines(env: Path, db_url: str) -> None:
    _events(db_url, 3)
    target = env / "exports"
    target.mkdir()
    assert run(["audit", "export", "--to", (target / "audit.jsonl").as_uri()]) == 0
    lines = (target / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["data"]["i"] for line in lines] == [0, 1, 2]
    assert {"seq", "entry_hash", "prev_hash", "actor"} <= set(json.loads(lines[0]))


def test_export_to_a_folder_is_a_clear_error(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "export", "--to", "s3://bucket"]) == 1
    assert "must name a file" in capsys.readouterr().err


def test_checkpoint_refuses_a_signing_key_file_named_pub(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the key's public half goes to <key>.pub: here that is the private key's own file
    key_file = env / "signing.pub"
    monkeypatch.setenv("AUDIT_SIGNING_KEY_FILE", str(key_file))

    assert run(["audit", "checkpoint"]) == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{key_file} is named like its public key" in err
    assert not key_file.exists()


def test_user_commands(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    name = f"u{uuid.uuid4().hex[:6]}"
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-123\n"))
    assert (
        run(
            ["user", "create", name, "--role", "operator", "--role", "approver", "--password-stdin"]
        )
        == 0
    )
    assert run(["user", "list"]) == 0
    assert name in capsys.readouterr().out
    assert run(["user", "disable", name]) == 0
    assert run(["user", "create", "bad", "--role", "wizard", "--password-stdin"]) == 1


@pytest.mark.parametrize("name", ["", "bad name!!", "x" * 5000, "tab\there"])
def test_user_create_refuses_a_username_the_api_would_refuse(
    env: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-123\n"))
    assert run(["user", "create", name, "--role", "viewer", "--password-stdin"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: a username is 1-128 letters") and err.count("\n") == 1
    assert run(["user", "list"]) == 0
    assert "viewer" not in capsys.readouterr().out  # nobody was created


def test_unreachable_checkpoint_store_counts_an_audit_write_error(
    make_settings: object, db_url: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    settings = make_settings(
        database_url=db_url,  # type: ignore[operator]
        audit_store_url=(blocker / "store").as_uri(),
    )
    ctx = AppContext.build(settings, service="test")
    before = metrics.AUDIT_WRITE_ERRORS.labels("object_store")._value.get()
    assert checkpoint_once(ctx) is False
    ctx.close()
    assert metrics.AUDIT_WRITE_ERRORS.labels("object_store")._value.get() == before + 1


@pytest.mark.parametrize("to", ["", " ", "exports", "{env}/exports/", "file://{env}/exports"])
def test_export_to_a_local_folder_is_a_clear_error(
    env: Path, to: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "exports").mkdir()
    monkeypatch.chdir(env)
    assert run(["audit", "export", "--to", to.format(env=env)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "must name a file" in err and "GenericError" not in err, err
    assert list((env / "exports").iterdir()) == []


def test_verify_fails_when_checkpoints_exist_but_the_key_is_missing(
    env: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped key path must not silently turn off truncation and rewrite detection.
    _events(db_url, 5)
    assert run(["audit", "checkpoint"]) == 0
    database = Database(db_url)
    with database.engine.begin() as conn:  # truncated: only a checkpoint can tell
        conn.execute(text("DELETE FROM audit_log WHERE seq = 5"))
    database.dispose()
    typo = env / "data" / "keys" / "audit-signing.pbu"
    monkeypatch.setenv("AUDIT_VERIFY_KEY_FILE", str(typo))
    capsys.readouterr()
    assert run(["audit", "verify"]) == 1
    captured = capsys.readouterr()
    assert "intact" not in captured.out
    assert captured.err.count("\n") == 1
    assert "AUDIT_VERIFY_KEY_FILE" in captured.err and str(typo) in captured.err


def test_verify_without_checkpoints_or_key_warns_and_passes(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A fresh install: nothing signed yet, so nothing the key could check.
    _events(db_url, 2)
    assert run(["audit", "verify"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("intact: 2 entries")
    assert "no signed checkpoints yet" in captured.err


def test_export_keeps_an_entry_whose_data_is_no_object_marked(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _events(db_url, 1)
    database = Database(db_url)
    forge_tail(database, category="auth", event_type="login.succeeded", data="not json")
    database.dispose()
    _events(db_url, 1)
    target = env / "audit.jsonl"
    assert run(["audit", "export", "--to", str(target)]) == 0
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["data_not_object"] for r in records] == [None, "not json", None]
    assert records[1]["data"] == {}
    assert capsys.readouterr().out.startswith("exported 3 entries")


@pytest.mark.parametrize(
    "to", ["{env}/newdir/", "newdir/", "file://{env}/newdir/", "s3://bucket/newdir/"]
)
def test_export_to_a_path_ending_in_a_slash_is_a_folder_and_refused(
    env: Path,
    db_url: str,
    to: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A trailing slash names a folder, existing or not: it wrote a file named "newdir".
    _events(db_url, 1)
    monkeypatch.chdir(env)
    assert run(["audit", "export", "--to", to.format(env=env)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "ends with /" in err and "must name a file" in err, err
    assert not (env / "newdir").exists()
