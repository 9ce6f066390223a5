"""`aegis safety list|review`: the review queue from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aegis.auth.service import create_user
from aegis.cli.main import run
from aegis.database.core import Database
from aegis.safety import service as safety
from aegis.safety.models import SafetyFlag
from tests.support import factories


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_JSON", "false")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


def _flag(database: Database) -> int:
    with database.unit_of_work() as session:
        flag = safety.raise_flag(
            session=session,
            reason="secret",
            subject_kind="incident",
            subject_id="7",
            excerpt="login with password=hunter2secret",
            actor="safety-screen",
        )
        assert flag is not None
        return flag.id


def test_a_reviewer_lists_the_queue_and_closes_a_flag(
    env: Path, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    flag_id = _flag(database)
    with database.unit_of_work() as session:
        create_user(
            session=session, username="rita", password="x" * 16, roles=["approver"], actor="test"
        )
        create_user(
            session=session, username="otto", password="x" * 16, roles=["operator"], actor="test"
        )

    assert run(["safety", "list", "--status", "open"]) == 0
    listed = capsys.readouterr().out
    assert "incident/7" in listed and "password=[REDACTED]" in listed
    assert "hunter2secret" not in listed

    assert run(["safety", "review", str(flag_id), "--verdict", "confirmed", "--actor", "otto"]) == 1
    assert "approver role" in capsys.readouterr().err
    assert run(["safety", "review", str(flag_id), "--verdict", "confirmed", "--actor", "rita"]) == 0
    assert run(["safety", "review", str(flag_id), "--verdict", "dismissed", "--actor", "rita"]) == 1
    assert "already confirmed" in capsys.readouterr().err

    assert run(["safety", "list", "--status", "open"]) == 0
    assert "incident/7" not in capsys.readouterr().out
    reviewed = factories.audit_events(database, "safety.reviewed")
    assert [(e.actor, json.loads(e.data)["verdict"]) for e in reviewed] == [("rita", "confirmed")]


@pytest.mark.parametrize(
    "argv",
    [
        ["safety", "list", "--status", "closed"],
        ["safety", "list", "--reason", "nonsense"],
        ["safety", "review", "1", "--verdict", "maybe", "--actor", "rita"],
        ["safety", "review", "999", "--verdict", "confirmed", "--actor", "nobody"],
    ],
)
def test_bad_values_are_one_line_errors(
    env: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_a_flag_id_no_database_holds_is_refused_as_such_not_unexpected(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["safety", "review", "99999999999999999999", "--verdict", "confirmed", "--actor", "rita"]
    assert run(argv) == 2  # a usage error, before any database is opened
    err = capsys.readouterr().err
    assert "unexpected" not in err and "less than or equal to 2147483647" in err


def test_a_review_note_longer_than_the_api_allows_is_refused_and_the_flag_stays_open(
    env: Path, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    flag_id = _flag(database)
    with database.unit_of_work() as session:
        create_user(
            session=session, username="rita", password="x" * 16, roles=["approver"], actor="test"
        )
    argv = ["safety", "review", str(flag_id), "--verdict", "dismissed", "--actor", "rita"]
    capsys.readouterr()
    assert run([*argv, "--note", "n" * 2001]) == 1
    err = capsys.readouterr().err
    assert err == "error: --note: at most 2000 characters\n"
    assert factories.audit_events(database, "safety.reviewed") == []
    assert run([*argv, "--note", "n" * 2000]) == 0


def test_a_review_note_no_database_can_hold_is_kept_as_the_api_keeps_it(
    env: Path, database: Database
) -> None:
    """A NUL, or a byte of argv that is not UTF-8 (a lone surrogate to Python), becomes U+FFFD,
    as the API's schema makes it, on both databases."""
    flag_id = _flag(database)
    with database.unit_of_work() as session:
        create_user(
            session=session, username="rita", password="x" * 16, roles=["approver"], actor="test"
        )
    argv = ["safety", "review", str(flag_id), "--verdict", "dismissed", "--actor", "rita"]
    assert run([*argv, "--note", "seen\x00twice \udcff"]) == 0
    with database.unit_of_work() as session:
        flag = session.get(SafetyFlag, flag_id)
        assert flag is not None and flag.review_note == "seen\ufffdtwice \ufffd"


@pytest.mark.parametrize(
    ("actor", "event_type", "code"),
    [
        ("nobody", "authentication.failed", "user_not_found"),
        ("otto", "access.denied", "permission_denied"),
    ],
)
def test_a_review_by_an_actor_who_may_not_review_is_audited_and_the_flag_stays_open(
    env: Path, database: Database, actor: str, event_type: str, code: str
) -> None:
    """An --actor that names no user, or one without the approver role, was refused without an
    audit record; the API audits both (authentication.failed, access.denied)."""
    flag_id = _flag(database)
    with database.unit_of_work() as session:
        create_user(
            session=session, username="otto", password="x" * 16, roles=["operator"], actor="test"
        )

    argv = ["safety", "review", str(flag_id), "--verdict", "dismissed", "--actor", actor]
    assert run(argv) == 1

    (refused,) = factories.audit_events(database, event_type)
    said = json.loads(refused.data)
    assert (refused.category, refused.actor, refused.outcome) == ("auth", actor, "denied")
    assert (said["code"], said["ip"]) == (code, "cli")
    assert refused.resource == f"aegis safety review {flag_id}"
    assert factories.audit_events(database, "safety.reviewed") == []
