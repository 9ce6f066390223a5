"""Managing users after they exist: roles, disabling, password resets and changes.

Through the API (an admin, or the user for their own password) and through the real CLI
(`aegis user set-roles|reset-password`); each change ends the user's sessions and is audited,
and no change may leave the platform without an enabled admin.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aegis.auth import service
from aegis.auth.errors import LastAdmin, UserExists
from aegis.cli.main import run
from aegis.core.config import Settings
from aegis.database.core import Database
from tests.support import factories
from tests.support.races import race

NEW_PASSWORD = "a-brand-new-password-42"


@pytest.fixture
def admin(client: TestClient, database: Database) -> dict[str, str]:
    return factories.signed_in(client, database, "admin")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_JSON", "false")


def _login_status(client: TestClient, name: str, password: str) -> int:
    response = client.post("/api/v1/auth/login", json={"username": name, "password": password})
    return int(response.status_code)


def _me(client: TestClient, tokens: dict[str, str]) -> int:
    return int(client.get("/api/v1/auth/me", headers=factories.bearer(tokens)).status_code)


# --- roles ------------------------------------------------------------------------------------


def test_admin_changes_roles_the_user_logs_in_again_and_it_is_audited(
    client: TestClient, database: Database, admin: dict[str, str]
) -> None:
    name = factories.user(database, "viewer")
    tokens = factories.login(client, name)

    response = client.put(
        f"/api/v1/users/{name}/roles", headers=admin, json={"roles": ["operator", "approver"]}
    )

    assert response.status_code == 200
    assert response.json()["roles"] == ["approver", "operator"]
    assert _me(client, tokens) == 401  # the old token carried the old roles
    again = factories.login(client, name)
    me = client.get("/api/v1/auth/me", headers=factories.bearer(again)).json()
    assert me["roles"] == ["approver", "operator"]
    event = factories.audit_events(database, "user.roles_changed")[-1]
    assert event.resource == f"user:{name}"
    assert json.loads(event.data)["before"] == ["viewer"]
    assert json.loads(event.data)["after"] == ["approver", "operator"]


def test_only_an_admin_may_change_roles_and_the_refusal_is_audited(
    client: TestClient, database: Database
) -> None:
    operator = factories.user(database, "operator")
    tokens = factories.login(client, operator)

    response = client.put(
        f"/api/v1/users/{operator}/roles",
        headers=factories.bearer(tokens),
        json={"roles": ["admin"]},
    )

    assert response.status_code == 403
    assert factories.audit_events(database, "access.denied")[-1].actor == operator
    assert not factories.audit_events(database, "user.roles_changed")


@pytest.mark.parametrize(
    ("body", "status"),
    [({"roles": ["wizard"]}, 422), ({"roles": []}, 422), ({}, 422)],
    ids=["unknown role", "no role", "no roles field"],
)
def test_bad_roles_are_refused_and_change_nothing(
    client: TestClient,
    database: Database,
    admin: dict[str, str],
    body: dict[str, object],
    status: int,
) -> None:
    name = factories.user(database, "viewer")
    tokens = factories.login(client, name)

    response = client.put(f"/api/v1/users/{name}/roles", headers=admin, json=body)

    assert response.status_code == status
    assert _me(client, tokens) == 200
    assert not factories.audit_events(database, "user.roles_changed")


def test_unknown_user_is_404(client: TestClient, admin: dict[str, str]) -> None:
    for method, path, body in [
        ("PUT", "/api/v1/users/ghost/roles", {"roles": ["viewer"]}),
        ("PUT", "/api/v1/users/ghost/password", {"password": NEW_PASSWORD}),
        ("POST", "/api/v1/users/ghost/disable", None),
    ]:
        response = client.request(method, path, headers=admin, json=body)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "user_not_found"


def test_the_last_enabled_admin_can_be_neither_demoted_nor_disabled(
    client: TestClient, database: Database
) -> None:
    name = factories.user(database, "admin")
    headers = factories.bearer(factories.login(client, name))

    demoted = client.put(f"/api/v1/users/{name}/roles", headers=headers, json={"roles": ["viewer"]})
    disabled = client.post(f"/api/v1/users/{name}/disable", headers=headers)

    for response in (demoted, disabled):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "last_admin"
    assert _me(client, {"access_token": headers["Authorization"][7:]}) == 200
    # with a second admin the first may step down
    factories.user(database, "admin")
    stepped_down = client.put(
        f"/api/v1/users/{name}/roles", headers=headers, json={"roles": ["viewer"]}
    )
    assert stepped_down.status_code == 200


# --- disabling --------------------------------------------------------------------------------


def test_admin_disables_and_enables_a_user(
    client: TestClient, database: Database, admin: dict[str, str]
) -> None:
    name = factories.user(database, "operator")
    tokens = factories.login(client, name)

    off = client.post(f"/api/v1/users/{name}/disable", headers=admin)

    assert off.status_code == 200 and off.json()["disabled"] is True
    assert _me(client, tokens) == 401
    assert _login_status(client, name, factories.PASSWORD) == 401
    on = client.post(f"/api/v1/users/{name}/enable", headers=admin)
    assert on.status_code == 200 and on.json()["disabled"] is False
    assert _login_status(client, name, factories.PASSWORD) == 200
    assert [e.event_type for e in factories.audit_events(database, "user.disabled")] == [
        "user.disabled"
    ]
    assert factories.audit_events(database, "user.enabled")[-1].resource == f"user:{name}"


# --- passwords --------------------------------------------------------------------------------


def test_admin_resets_a_password_the_old_one_and_sessions_stop_working(
    client: TestClient, database: Database, admin: dict[str, str]
) -> None:
    name = factories.user(database, "operator")
    tokens = factories.login(client, name)

    response = client.put(
        f"/api/v1/users/{name}/password", headers=admin, json={"password": NEW_PASSWORD}
    )

    assert response.status_code == 204
    assert _me(client, tokens) == 401
    assert _login_status(client, name, factories.PASSWORD) == 401
    assert _login_status(client, name, NEW_PASSWORD) == 200
    event = factories.audit_events(database, "user.password_reset")[-1]
    assert NEW_PASSWORD not in event.data


def test_a_user_changes_their_own_password(client: TestClient, database: Database) -> None:
    name = factories.user(database, "viewer")
    tokens = factories.login(client, name)
    other_device = factories.login(client, name)

    response = client.post(
        "/api/v1/auth/password",
        headers=factories.bearer(tokens),
        json={"current_password": factories.PASSWORD, "new_password": NEW_PASSWORD},
    )

    assert response.status_code == 204
    assert _me(client, tokens) == 401 and _me(client, other_device) == 401
    assert _login_status(client, name, NEW_PASSWORD) == 200
    assert _login_status(client, name, factories.PASSWORD) == 401
    event = factories.audit_events(database, "user.password_changed")[-1]
    assert event.actor == name
    assert NEW_PASSWORD not in event.data


def test_a_wrong_current_password_changes_nothing_and_is_audited(
    client: TestClient, database: Database
) -> None:
    name = factories.user(database, "viewer")
    tokens = factories.login(client, name)

    response = client.post(
        "/api/v1/auth/password",
        headers=factories.bearer(tokens),
        json={"current_password": "not-my-password", "new_password": NEW_PASSWORD},
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "wrong_password"
    assert "not-my-password" not in response.text
    assert _me(client, tokens) == 200
    assert _login_status(client, name, factories.PASSWORD) == 200
    denied = factories.audit_events(database, "access.denied")[-1]
    assert denied.actor == name and denied.resource == "POST /api/v1/auth/password"
    assert "not-my-password" not in denied.data


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/password", {"current_password": "x", "new_password": "short"}),
        ("/api/v1/users/{name}/password", {"password": "short"}),
    ],
    ids=["change", "reset"],
)
def test_a_short_new_password_is_refused(
    client: TestClient,
    database: Database,
    admin: dict[str, str],
    path: str,
    body: dict[str, str],
) -> None:
    name = factories.user(database, "viewer")
    tokens = factories.login(client, name)
    headers = factories.bearer(tokens) if "auth" in path else admin

    response = client.request(
        "PUT" if "users" in path else "POST", path.format(name=name), headers=headers, json=body
    )

    assert response.status_code == 422
    assert "short" not in response.text  # the rejected password is not echoed back
    assert _login_status(client, name, factories.PASSWORD) == 200


def test_service_principals_have_no_password_to_change(
    client: TestClient, settings: Settings
) -> None:
    response = client.post(
        "/api/v1/auth/password",
        headers={"X-API-Key": settings.secret("api_key")},
        json={"current_password": "x", "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 403


# --- the CLI ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("cli_env")
def test_cli_reset_password_and_set_roles(
    client: TestClient,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = factories.user(database, "viewer")
    tokens = factories.login(client, name)

    monkeypatch.setattr("sys.stdin", io.StringIO(NEW_PASSWORD + "\n"))
    assert run(["user", "reset-password", name, "--password-stdin"]) == 0
    assert f"password reset for {name}" in capsys.readouterr().out
    assert _me(client, tokens) == 401
    assert _login_status(client, name, NEW_PASSWORD) == 200

    tokens = factories.login(client, name, NEW_PASSWORD)
    assert run(["user", "set-roles", name, "--role", "operator", "--role", "approver"]) == 0
    assert f"{name} now holds approver, operator" in capsys.readouterr().out
    assert _me(client, tokens) == 401
    event = factories.audit_events(database, "user.roles_changed")[-1]
    assert event.actor == "cli:local-operator"
    assert json.loads(event.data)["after"] == ["approver", "operator"]


@pytest.mark.usefixtures("cli_env")
def test_cli_password_from_a_file_with_windows_line_endings_is_the_password(
    client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aegis user reset-password NAME --password-stdin < pw.txt`` with pw.txt saved on
    Windows: the password is what the file holds, not it plus a carriage return."""
    name = factories.user(database, "viewer")
    monkeypatch.setattr("sys.stdin", io.StringIO(NEW_PASSWORD + "\r\n", newline=""))

    assert run(["user", "reset-password", name, "--password-stdin"]) == 0
    assert _login_status(client, name, NEW_PASSWORD) == 200


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["user", "set-roles", "{name}", "--role", "wizard"], "", "unknown role 'wizard'"),
        (["user", "set-roles", "ghost", "--role", "viewer"], "", "user 'ghost' not found"),
        (
            ["user", "reset-password", "{name}", "--password-stdin"],
            "short\n",
            "12 to 1024 characters",
        ),
        (["user", "reset-password", "ghost", "--password-stdin"], NEW_PASSWORD + "\n", "ghost"),
    ],
    ids=["unknown role", "unknown user", "short password", "unknown user reset"],
)
def test_cli_refusals_exit_1_with_one_line_and_change_nothing(
    client: TestClient,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str,
    message: str,
) -> None:
    name = factories.user(database, "viewer")
    tokens = factories.login(client, name)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))

    assert run([a.format(name=name) for a in argv]) == 1

    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert _me(client, tokens) == 200
    assert _login_status(client, name, factories.PASSWORD) == 200


def test_two_admins_demoting_each_other_at_once_leave_one_admin(database: Database) -> None:
    # Two transactions each demote one of the only two admins. The first holds its transaction
    # open; the second must wait for it and then see that only it is left.
    first = factories.user(database, "admin")
    second = factories.user(database, "admin")

    def demote_second() -> str:
        try:
            with database.unit_of_work() as session:
                service.set_roles(session=session, username=second, roles=["viewer"], actor="t")
        except LastAdmin:
            return "refused"
        return "demoted"

    with database.unit_of_work() as session:
        service.set_roles(session=session, username=first, roles=["viewer"], actor="t")
        racing = race(demote_second)  # without the lock it would finish (wrongly) now
        assert racing.waiting or racing.result == "refused", racing.result

    assert racing.done() == "refused"
    with database.unit_of_work() as session:
        roles = {u.username: u.roles for u in service.list_users(session=session)}
    assert roles[first] == ["viewer"] and roles[second] == ["admin"]


def test_one_name_created_twice_at_once_is_one_user_and_one_conflict(database: Database) -> None:

    def create_meanwhile() -> str:
        try:
            with database.unit_of_work() as session:
                service.create_user(
                    session=session, username="dup", password="x" * 16, roles=["viewer"], actor="b"
                )
        except UserExists:
            return "exists"
        return "created"

    with database.unit_of_work() as session:
        service.create_user(
            session=session, username="dup", password="y" * 16, roles=["admin"], actor="a"
        )
        racing = race(create_meanwhile)

    assert racing.done() == "exists"
    with database.unit_of_work() as session:
        users = [u for u in service.list_users(session=session) if u.username == "dup"]
    assert [u.roles for u in users] == [["admin"]]
