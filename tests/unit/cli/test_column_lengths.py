"""Text longer than its column holds is refused the same way on SQLite (which would store it)
and PostgreSQL (which would fail mid-command with a driver error): one line, exit 1, nothing
written."""

from __future__ import annotations

from pathlib import Path

import pytest

from aegis.cli.main import run
from aegis.database.core import Database
from aegis.engine.model import export_model_dir, train
from aegis.registry import catalog
from aegis.registry import service as registry_service
from tests.support import factories
from tests.support.releases import MODEL, Releases


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_JSON", "false")
    return tmp_path


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "database error" not in err and "unexpected" not in err, err
    return err.strip()


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_promotion_comment_past_its_column_is_refused(
    env: Path, database: Database, decision: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Releases.start(env, database).push("0.1")
    approver = factories.user(database, "approver")
    with database.unit_of_work() as session:
        request = catalog.request_promotion(
            session=session, name=MODEL, version="0.1", to="production", actor="al"
        )
    capsys.readouterr()
    argv = ["model", decision, str(request.id), "--actor", approver, "--comment"]
    assert run([*argv, "c" * 2001]) == 1
    assert _one_line(capsys) == "error: --comment: at most 2000 characters"
    with database.unit_of_work() as session:
        assert catalog.list_promotions(session=session)[0].status == "pending"
    assert factories.audit_events(database, f"model.promotion_{decision}d") == []
    assert run([*argv, "c" * 2000]) == 0


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_promotion_comment_no_database_can_hold_is_kept_as_the_api_keeps_it(
    env: Path, database: Database, decision: str
) -> None:
    """A NUL, or a byte of argv that is not UTF-8 (a lone surrogate to Python), becomes U+FFFD
    on both databases, as the API's schema makes it, instead of an encoding error on one."""
    Releases.start(env, database).push("0.1")
    approver = factories.user(database, "approver")
    with database.unit_of_work() as session:
        request = catalog.request_promotion(
            session=session, name=MODEL, version="0.1", to="production", actor="al"
        )
    argv = ["model", decision, str(request.id), "--actor", approver]
    assert run([*argv, "--comment", "ok\x00by me \udcff"]) == 0
    with database.unit_of_work() as session:
        assert catalog.list_promotions(session=session)[0].comment == "ok\ufffdby me \ufffd"


def test_a_push_actor_past_its_column_is_refused(
    env: Path, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    releases = Releases.start(env, database)
    source = env / "m0.1"
    export_model_dir(train(version="0.1"), source)
    archive = env / "model.tar.gz"
    registry_service.build_archive(source, archive, name=MODEL, version="0.1")
    registry_service.sign_archive(archive, releases.key)
    argv = ["model", "push", str(archive), "--to", (env / "store").as_uri(), "--key"]
    capsys.readouterr()
    assert run([*argv, str(releases.pub), "--actor", "a" * 257]) == 1
    line = _one_line(capsys)
    assert line.startswith("error: ") and "at most 256 characters (257 given)" in line, line
    with database.unit_of_work() as session:
        assert catalog.list_versions(session=session) == []
