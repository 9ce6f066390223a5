"""``--actor`` on the CLI's state-changing commands (`aegis policy sync|apply`, `aegis user …`,
`aegis executor disable|enable`): the named user is who the audit log records; a name no user
holds, or one without the admin role the API asks for the same change, is refused (exit 1,
nothing changed, the refusal audited as the API's is); without ``--actor`` the change is still
made and recorded as ``cli:local-operator`` (the first admin has nobody to name)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from aegis.actions.jobs import KILL_SWITCH_FLAG
from aegis.auth import service as auth_service
from aegis.cli.main import run
from aegis.database.core import Database
from aegis.flags import service as flags
from aegis.policy import service as policy_service
from tests.support import factories

POLICY = """
id: demo-restarts
effect: allow
subjects: ["role:operator"]
actions: ["restart_deployment"]
resources: {namespaces: ["demo"], names: ["*"]}
"""
PASSWORD = "a-long-enough-password"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, database: Database) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_JSON", "false")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "allow.yaml").write_text(POLICY)
    factories.user(database, "admin", username="ada")
    factories.user(database, "operator", "approver", username="otto")
    return tmp_path


def _active(database: Database) -> list[str]:
    with database.unit_of_work() as session:
        return [p.id for p in policy_service.active_policies(session=session)]


def _dispatch(database: Database) -> str | None:
    with database.unit_of_work() as session:
        return flags.get(session=session, name=KILL_SWITCH_FLAG, default="true")


def _user(database: Database, name: str) -> tuple[list[str], bool] | None:
    with database.unit_of_work() as session:
        users = {u.username: u for u in auth_service.list_users(session=session)}
        user = users.get(name)
        return None if user is None else (sorted(user.roles), user.disabled)


def _actors(database: Database, event_type: str) -> list[str]:
    return [e.actor for e in factories.audit_events(database, event_type)]


def _assert_refusal_audited(database: Database, actor: str, resource: str) -> None:
    """Audited as the API audits its caller: a name no user holds as authentication.failed,
    a user without the role as access.denied."""
    unknown = actor == "nobody"
    event_type = "authentication.failed" if unknown else "access.denied"
    (refused,) = factories.audit_events(database, event_type)
    said = json.loads(refused.data)
    assert (refused.actor, refused.outcome, refused.resource) == (actor, "denied", resource)
    assert said["code"] == ("user_not_found" if unknown else "permission_denied")
    assert said["ip"] == "cli"


# --- policies ---------------------------------------------------------------------------------


def test_policy_sync_records_the_named_admin(env: Path, database: Database) -> None:
    assert run(["policy", "sync", str(env / "policies"), "--yes", "--actor", "ada"]) == 0

    assert _active(database) == ["demo-restarts"]
    assert _actors(database, "policy.create") == ["ada"]


def test_policy_apply_records_the_named_admin(env: Path, database: Database) -> None:
    assert run(["policy", "sync", str(env / "policies"), "--yes"]) == 0
    bundle = env / "bundle.tar"
    assert run(["policy", "export", "--serial", "1", "--out", str(bundle)]) == 0
    (env / "policies" / "allow.yaml").unlink()
    assert run(["policy", "sync", str(env / "policies"), "--yes", "--actor", "ada"]) == 0

    assert run(["policy", "apply", str(bundle), "--yes", "--actor", "ada"]) == 0

    assert _active(database) == ["demo-restarts"]
    assert _actors(database, "policy.bundle_applied") == ["ada"]
    assert _actors(database, "policy.create") == ["cli:local-operator", "ada"]
    assert _actors(database, "policy.delete") == ["ada"]


@pytest.mark.parametrize("actor", ["nobody", "otto"])
def test_policy_sync_by_an_actor_who_is_not_an_admin_is_refused_and_audited(
    env: Path, database: Database, actor: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["policy", "sync", str(env / "policies"), "--yes", "--actor", actor]) == 1

    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error:" in err
    assert _active(database) == []
    assert factories.audit_events(database, "policy.create") == []
    _assert_refusal_audited(database, actor, "aegis policy sync")


@pytest.mark.parametrize("actor", ["nobody", "otto"])
def test_policy_apply_by_an_actor_who_is_not_an_admin_is_refused_and_audited(
    env: Path, database: Database, actor: str
) -> None:
    assert run(["policy", "sync", str(env / "policies"), "--yes"]) == 0
    bundle = env / "bundle.tar"
    assert run(["policy", "export", "--serial", "1", "--out", str(bundle)]) == 0
    (env / "policies" / "allow.yaml").unlink()
    assert run(["policy", "sync", str(env / "policies"), "--yes"]) == 0

    assert run(["policy", "apply", str(bundle), "--yes", "--actor", actor]) == 1

    assert _active(database) == []
    assert factories.audit_events(database, "policy.bundle_applied") == []
    _assert_refusal_audited(database, actor, "aegis policy apply bundle.tar")


def test_a_policy_change_without_actor_is_still_the_local_operators(
    env: Path, database: Database
) -> None:
    assert run(["policy", "sync", str(env / "policies"), "--yes"]) == 0

    assert _actors(database, "policy.create") == ["cli:local-operator"]


def test_an_actor_that_is_no_name_is_refused_before_anything_is_read(
    env: Path, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    commands = [
        ["policy", "sync", str(env / "policies"), "--yes"],
        ["executor", "disable"],
        ["user", "create", "vera", "--role", "viewer"],  # refused before asking for a password
    ]
    for command in commands:
        for actor in ("", "ada\nmallory", "x" * 300):
            assert run([*command, "--actor", actor]) == 1
            err = capsys.readouterr().err
            assert "--actor" in err and len(err.strip().splitlines()) == 1

    assert _active(database) == []
    assert _dispatch(database) == "true"
    assert _user(database, "vera") is None
    assert factories.audit_events(database, "access.denied") == []
    assert factories.audit_events(database, "authentication.failed") == []


# --- the backend's dispatch switch ----------------------------------------------------------------


def test_executor_disable_and_enable_record_the_named_admin(env: Path, database: Database) -> None:
    assert run(["executor", "disable", "--actor", "ada"]) == 0
    assert _dispatch(database) == "false"
    assert run(["executor", "enable", "--actor", "ada"]) == 0

    assert _actors(database, "executor.disabled") == ["ada"]
    assert _actors(database, "executor.enabled") == ["ada"]


@pytest.mark.parametrize("actor", ["nobody", "otto"])
def test_executor_disable_by_an_actor_who_is_not_an_admin_is_refused_and_audited(
    env: Path, database: Database, actor: str
) -> None:
    assert run(["executor", "disable", "--actor", actor]) == 1

    assert _dispatch(database) == "true"
    assert factories.audit_events(database, "executor.disabled") == []
    _assert_refusal_audited(database, actor, "aegis executor disable")


def test_executor_disable_without_actor_is_still_the_local_operators(
    env: Path, database: Database
) -> None:
    assert run(["executor", "disable"]) == 0

    assert _actors(database, "executor.disabled") == ["cli:local-operator"]


# --- users ------------------------------------------------------------------------------------


def test_user_changes_record_the_named_admin(
    env: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    argv = ["user", "create", "vera", "--role", "viewer", "--password-stdin", "--actor", "ada"]
    assert run(argv) == 0
    assert run(["user", "set-roles", "vera", "--role", "operator", "--actor", "ada"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "-2\n"))
    assert run(["user", "reset-password", "vera", "--password-stdin", "--actor", "ada"]) == 0
    assert run(["user", "disable", "vera", "--actor", "ada"]) == 0
    assert run(["user", "enable", "vera", "--actor", "ada"]) == 0

    assert _user(database, "vera") == (["operator"], False)
    for event_type in (
        "user.created",
        "user.roles_changed",
        "user.password_reset",
        "user.disabled",
        "user.enabled",
    ):
        assert _actors(database, event_type)[-1:] == ["ada"], event_type


@pytest.mark.parametrize("actor", ["nobody", "otto"])
@pytest.mark.parametrize(
    ("command", "stdin"),
    [
        (["create", "vera", "--role", "admin", "--password-stdin"], PASSWORD + "\n"),
        (["set-roles", "otto", "--role", "admin"], ""),
        (["reset-password", "ada", "--password-stdin"], PASSWORD + "-2\n"),
        (["disable", "ada"], ""),
        (["enable", "ada"], ""),
    ],
)
def test_a_user_change_by_an_actor_who_is_not_an_admin_is_refused_and_audited(
    env: Path,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    actor: str,
    command: list[str],
    stdin: str,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    before = {name: _user(database, name) for name in ("ada", "otto", "vera")}

    assert run(["user", *command, "--actor", actor]) == 1

    assert {name: _user(database, name) for name in before} == before
    assert factories.audit_events(database, "user.roles_changed") == []
    assert factories.audit_events(database, "user.password_reset") == []
    assert len(factories.audit_events(database, "user.created")) == 2  # ada and otto
    _assert_refusal_audited(database, actor, f"aegis user {command[0]} {command[1]}")


def test_a_disabled_admin_is_refused(env: Path, database: Database) -> None:
    factories.user(database, "admin", username="root2")
    assert run(["user", "disable", "ada", "--actor", "root2"]) == 0

    assert run(["user", "enable", "ada", "--actor", "ada"]) == 1

    assert _user(database, "ada") == (["admin"], True)
    _assert_refusal_audited(database, "ada", "aegis user enable ada")


def test_the_first_admin_is_created_without_actor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, database: Database
) -> None:
    """Nobody holds a role before the first user: `aegis user create` needs no --actor."""
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_JSON", "false")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))

    assert run(["user", "create", "root", "--role", "admin", "--password-stdin"]) == 0

    assert _user(database, "root") == (["admin"], False)
    assert _actors(database, "user.created") == ["cli:local-operator"]


def test_a_change_to_a_user_no_one_holds_is_not_audited_as_the_actors_refusal(
    env: Path, database: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    """ada may disable users; that ghost is no user is the change's error, not ada's refusal."""
    assert run(["user", "disable", "ghost", "--actor", "ada"]) == 1

    assert "user 'ghost' not found" in capsys.readouterr().err
    assert factories.audit_events(database, "authentication.failed") == []
    assert factories.audit_events(database, "access.denied") == []
