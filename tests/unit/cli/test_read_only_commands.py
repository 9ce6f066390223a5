"""Commands that only read never change the schema: against a database that is not at this
Aegis's revision they say, in one line, to run `aegis db upgrade`, and leave it as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from aegis.cli.main import run
from aegis.database import migrate
from aegis.database.core import make_engine
from tests.support import services

READ_ONLY = [
    ["user", "list"],
    ["safety", "list"],
    ["audit", "verify"],
    ["audit", "export", "--to", "file:///dev/null"],
    ["model", "list"],
    ["policy", "replay"],
    ["policy", "replay", "--policies", "policies"],
    ["policy", "sync", "policies", "--dry-run"],
    ["policy", "export", "--serial", "1", "--out", "bundle.tar"],
    ["executor", "status"],
]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AUDIT_STORE_URL", (tmp_path / "audit-store").as_uri())
    monkeypatch.setenv("LOG_JSON", "false")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policies").mkdir()  # an empty candidate set for `policy sync|replay`
    return tmp_path


def _refused(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert run(args) == 1, args
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "aegis db upgrade" in err, err
    return err


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_read_only_command_refuses_an_empty_database_that_a_writer_migrates(
    args: list[str],
    db_backend: str,
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for url in services.fresh_database(db_backend, None, env):
        monkeypatch.setenv("DATABASE_URL", url)
        engine = make_engine(url)
        try:
            engine.connect().close()  # the database exists (on SQLite: the file), holding nothing
            err = _refused(args, capsys)
            assert "no Aegis schema" in err
            assert not (env / "bundle.tar").exists()
            assert inspect(engine).get_table_names() == []
            assert run(["user", "disable", "nobody"]) == 1  # a command that writes migrates
            assert migrate.current(engine) == migrate.known_heads()
        finally:
            engine.dispose()


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_read_only_command_does_not_migrate_an_older_database(
    args: list[str],
    db_url: str,
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    engine = make_engine(db_url)
    try:
        migrate.downgrade(engine, "0010")  # the 0011 branch one step back
        monkeypatch.setenv("DATABASE_URL", db_url)
        err = _refused(args, capsys)
        assert "is at revision 0005, 0010" in err
        assert migrate.current(engine) == ["0005", "0010"]
    finally:
        engine.dispose()


def test_a_read_only_command_does_not_create_a_sqlite_file(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = env / "missing.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+pysqlite:///{path}")
    _refused(["user", "list"], capsys)
    assert not path.exists()


def test_a_database_a_newer_aegis_migrated_is_named_as_such(
    db_url: str, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(db_url)
    *others, head = migrate.known_heads()  # the main line's head, last
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE alembic_version SET version_num = '0099' WHERE version_num = :head"),
                {"head": head},
            )
        monkeypatch.setenv("DATABASE_URL", db_url)
        assert run(["user", "list"]) == 1
        err = capsys.readouterr().err
        at = ", ".join([*others, "0099"])
        assert err.count("\n") == 1 and f"{at}, newer than this Aegis knows" in err, err
        assert migrate.current(engine) == [*others, "0099"]
    finally:
        engine.dispose()
