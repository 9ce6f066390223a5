"""The life of a promotion request over the API and the CLI: who may ask and decide, rejection,
decisions that cannot be taken twice, and what the audit log keeps of each."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aegis.backend_app import create_app
from aegis.cli.main import run
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.registry import catalog
from aegis.registry.errors import PromotionConflict
from tests.support import factories
from tests.support.races import race
from tests.support.releases import Releases

MODELS = "/api/v1/models"


@pytest.fixture
def pushed(tmp_path: Path, database: Database) -> Callable[[str], Path]:
    """Push a version of example_multimodal (it lands in staging)."""
    return Releases.start(tmp_path, database).push


@pytest.fixture
def client(make_settings: Callable[..., Settings], db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url=db_url))) as test_client:
        yield test_client


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    """The ``aegis`` CLI run in process works on this test's database."""
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_JSON", "false")


def _stage(client: TestClient, headers: dict[str, str], version: str) -> str:
    listed = client.get(MODELS, params={"name": "example_multimodal"}, headers=headers).json()
    return next(str(m["stage"]) for m in listed if m["version"] == version)


def _ask(client: TestClient, headers: dict[str, str], version: str, to: str) -> Any:
    return client.post(
        f"{MODELS}/example_multimodal/{version}/promotions", json={"to": to}, headers=headers
    )


def test_only_operators_ask_and_only_approvers_decide(
    client: TestClient, database: Database, pushed: Callable[[str], Path]
) -> None:
    pushed("0.1")
    viewer = factories.signed_in(client, database, "viewer")
    operator = factories.signed_in(client, database, "operator")
    assert _ask(client, viewer, "0.1", "production").status_code == 403
    promotion = _ask(client, operator, "0.1", "production").json()["id"]
    for decision in ("approve", "reject"):
        url = f"{MODELS}/promotions/{promotion}/{decision}"
        assert client.post(url, json={}, headers=operator).status_code == 403
        assert client.post(url, json={}, headers=viewer).status_code == 403
    assert _stage(client, viewer, "0.1") == "staging"


def test_a_rejected_promotion_changes_nothing_and_cannot_be_approved_later(
    client: TestClient, database: Database, pushed: Callable[[str], Path]
) -> None:
    pushed("0.1")
    requester = factories.signed_in(client, database, "operator", "approver")
    approver = factories.signed_in(client, database, "approver")
    promotion = _ask(client, requester, "0.1", "production").json()["id"]
    reject = f"{MODELS}/promotions/{promotion}/reject"

    own = client.post(reject, json={}, headers=requester)
    assert own.status_code == 403 and own.json()["error"]["code"] == "four_eyes_required"
    rejected = client.post(reject, json={"comment": "eval report missing"}, headers=approver)
    assert rejected.status_code == 200
    body = rejected.json()
    assert (body["status"], body["comment"]) == ("rejected", "eval report missing")
    assert body["decided_by"] and body["decided_at"]

    late = client.post(f"{MODELS}/promotions/{promotion}/approve", json={}, headers=approver)
    assert late.status_code == 409 and "already rejected" in late.json()["error"]["message"]
    assert client.post(reject, json={}, headers=approver).status_code == 409
    assert _stage(client, approver, "0.1") == "staging"

    listed = client.get(f"{MODELS}/promotions", params={"status": "rejected"}, headers=approver)
    assert [p["id"] for p in listed.json()] == [promotion]
    pending = client.get(f"{MODELS}/promotions", params={"status": "pending"}, headers=approver)
    assert pending.json() == []
    for typo in ("rejectd", ""):  # a status no request can have is refused, not an empty list
        wrong = client.get(f"{MODELS}/promotions", params={"status": typo}, headers=approver)
        assert wrong.status_code == 422, typo
        assert wrong.json()["error"]["code"] == "invalid_request"
    events = factories.audit_events(database, "model.promotion_rejected")
    assert len(events) == 1 and "eval report missing" in events[0].data
    assert not factories.audit_events(database, "model.promoted")


def test_requests_that_cannot_be_met_are_refused_with_one_line(
    client: TestClient, database: Database, pushed: Callable[[str], Path]
) -> None:
    pushed("0.1")
    operator = factories.signed_in(client, database, "operator", "approver")
    approver = factories.signed_in(client, database, "approver")
    unknown_stage = _ask(client, operator, "0.1", "canary")
    assert unknown_stage.status_code == 422
    same_stage = _ask(client, operator, "0.1", "staging")
    assert (
        same_stage.status_code == 409 and "already staging" in same_stage.json()["error"]["message"]
    )
    assert _ask(client, operator, "9.9", "production").status_code == 404
    missing = client.post(f"{MODELS}/promotions/999/approve", json={}, headers=approver)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"

    # two requests for the same change: the second cannot promote a version twice
    first = _ask(client, operator, "0.1", "production").json()["id"]
    second = _ask(client, operator, "0.1", "production").json()["id"]
    approve = f"{MODELS}/promotions/{{}}/approve"
    assert client.post(approve.format(first), json={}, headers=approver).status_code == 200
    twice = client.post(approve.format(second), json={}, headers=approver)
    assert twice.status_code == 409 and "already production" in twice.json()["error"]["message"]
    assert len(factories.audit_events(database, "model.promoted")) == 1
    assert _stage(client, approver, "0.1") == "production"


def test_the_cli_rejects_with_four_eyes(
    cli_env: None,
    database: Database,
    pushed: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pushed("0.1")
    requester = factories.user(database, "operator", "approver")
    approver = factories.user(database, "approver")
    viewer = factories.user(database, "viewer")
    for nobody in ("", "  ", "tab\there"):  # a request must say who asks
        assert run(["model", "promote", "example_multimodal", "0.1", "--actor", nobody]) == 1
        assert "--actor names who asks" in capsys.readouterr().err
    assert run(["model", "promote", "example_multimodal", "0.1", "--actor", requester]) == 0
    capsys.readouterr()
    assert run(["model", "reject", "1", "--actor", requester]) == 1
    assert "other than its requester" in capsys.readouterr().err
    assert run(["model", "reject", "1", "--actor", viewer]) == 1
    assert "approver role" in capsys.readouterr().err
    assert run(["model", "reject", "1", "--actor", approver, "--comment", "not yet"]) == 0
    assert "rejected promotion request 1" in capsys.readouterr().out
    assert run(["model", "approve", "1", "--actor", approver]) == 1
    assert "already rejected" in capsys.readouterr().err
    assert run(["model", "list", "--name", "example_multimodal"]) == 0
    out = capsys.readouterr().out
    assert "staging" in out and "production" not in out


def test_two_approvers_at_once_promote_once(
    database: Database, pushed: Callable[[str], Path]
) -> None:
    pushed("0.1")
    with database.unit_of_work() as session:
        request = catalog.request_promotion(
            session=session, name="example_multimodal", version="0.1", to="production", actor="al"
        )
        promotion_id = request.id

    def approve_meanwhile() -> str:
        try:
            with database.unit_of_work() as session:
                catalog.approve(session=session, promotion_id=promotion_id, actor="carol")
        except PromotionConflict:
            return "refused"
        return "approved"

    with database.unit_of_work() as session:
        catalog.approve(session=session, promotion_id=promotion_id, actor="bob")
        racing = race(approve_meanwhile)
        assert racing.waiting or racing.result == "refused", racing.result

    assert racing.done() == "refused"
    assert len(factories.audit_events(database, "model.promoted")) == 1


def test_two_versions_approved_for_production_at_once_leave_one_in_production(
    database: Database, pushed: Callable[[str], Path]
) -> None:
    for version in ("0.1", "0.2"):
        pushed(version)
    with database.unit_of_work() as session:
        first, second = (
            catalog.request_promotion(
                session=session, name="example_multimodal", version=v, to="production", actor="al"
            ).id
            for v in ("0.1", "0.2")
        )

    def approve_second() -> str:
        with database.unit_of_work() as session:
            return catalog.approve(session=session, promotion_id=second, actor="carol").version

    with database.unit_of_work() as session:
        catalog.approve(session=session, promotion_id=first, actor="bob")
        racing = race(approve_second)

    assert racing.done() == "0.2"
    with database.unit_of_work() as session:
        stages = {v.version: v.stage for v in catalog.list_versions(session=session)}
    assert stages == {"0.1": "archived", "0.2": "production"}


def test_a_request_left_pending_after_its_version_moved_cannot_promote_it_again(
    client: TestClient, database: Database, pushed: Callable[[str], Path]
) -> None:
    pushed("0.1")
    operator = factories.signed_in(client, database, "operator")
    approver = factories.signed_in(client, database, "approver")
    approve = f"{MODELS}/promotions/{{}}/approve"
    first, stale = (_ask(client, operator, "0.1", "production").json()["id"] for _ in range(2))
    assert client.post(approve.format(first), json={}, headers=approver).status_code == 200
    pushed("0.2")
    newer = _ask(client, operator, "0.2", "production").json()["id"]
    assert client.post(approve.format(newer), json={}, headers=approver).status_code == 200

    late = client.post(approve.format(stale), json={}, headers=approver)
    assert late.status_code == 409 and late.json()["error"]["code"] == "promotion_conflict"
    assert f"request {first}" in late.json()["error"]["message"]
    assert (_stage(client, approver, "0.1"), _stage(client, approver, "0.2")) == (
        "archived",
        "production",
    )
    # asked again now, a rollback to 0.1 is an ordinary promotion
    rollback = _ask(client, operator, "0.1", "production").json()["id"]
    assert client.post(approve.format(rollback), json={}, headers=approver).status_code == 200
    assert _stage(client, approver, "0.1") == "production"


def test_the_cli_asks_only_for_an_operator_so_a_variant_name_cannot_pass_four_eyes(
    cli_env: None,
    database: Database,
    pushed: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pushed("0.1")
    approver = factories.user(database, "approver")
    for alias in (f"{approver} ", approver.upper(), "nobody"):  # no user holds these names
        assert run(["model", "promote", "example_multimodal", "0.1", "--actor", alias]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
    assert run(["model", "promote", "example_multimodal", "0.1", "--actor", approver]) == 1
    assert "operator role" in capsys.readouterr().err  # an approver alone does not ask
    assert run(["model", "list"]) == 0
    capsys.readouterr()
    with database.unit_of_work() as session:
        assert catalog.list_promotions(session=session) == []


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_self_decision_refused_by_the_cli_is_audited_as_over_the_api(
    cli_env: None,
    client: TestClient,
    database: Database,
    pushed: Callable[[str], Path],
    decision: str,
) -> None:
    pushed("0.1")
    requester = factories.user(database, "operator", "approver")
    headers = factories.bearer(factories.login(client, requester))
    promotion = _ask(client, headers, "0.1", "production").json()["id"]
    url = f"{MODELS}/promotions/{promotion}/{decision}"
    assert client.post(url, json={}, headers=headers).status_code == 403

    assert run(["model", decision, str(promotion), "--actor", requester]) == 1

    api, cli = factories.audit_events(database, "access.denied")
    assert (cli.category, cli.actor, cli.outcome) == (api.category, api.actor, api.outcome)
    assert (cli.category, cli.actor, cli.outcome) == ("auth", requester, "denied")
    said = {key: json.loads(api.data)[key] for key in ("code", "reason")}
    assert said["code"] == "four_eyes_required"
    assert {key: json.loads(cli.data)[key] for key in ("code", "reason")} == said
    assert str(promotion) in cli.resource and decision in cli.resource

    viewer = factories.user(database, "viewer")
    assert run(["model", decision, str(promotion), "--actor", viewer]) == 1
    denied = factories.audit_events(database, "access.denied")[-1]
    assert (denied.actor, json.loads(denied.data)["code"]) == (viewer, "permission_denied")


def test_a_promotion_asked_by_the_cli_without_the_operator_role_is_audited_as_over_the_api(
    cli_env: None,
    client: TestClient,
    database: Database,
    pushed: Callable[[str], Path],
) -> None:
    pushed("0.1")
    approver = factories.user(database, "approver")  # may decide, may not ask
    headers = factories.bearer(factories.login(client, approver))
    assert _ask(client, headers, "0.1", "production").status_code == 403

    assert run(["model", "promote", "example_multimodal", "0.1", "--actor", approver]) == 1

    api, cli = factories.audit_events(database, "access.denied")
    assert (cli.category, cli.actor, cli.outcome) == (api.category, api.actor, api.outcome)
    assert (cli.category, cli.actor, cli.outcome) == ("auth", approver, "denied")
    said = json.loads(cli.data)
    assert (said["code"], said["ip"]) == (json.loads(api.data)["code"], "cli")
    assert said["code"] == "permission_denied"
    assert "operator role" in said["reason"]
    assert "example_multimodal 0.1" in cli.resource and "promote" in cli.resource
    with database.unit_of_work() as session:
        assert catalog.list_promotions(session=session) == []


@pytest.mark.parametrize("command", ["promote", "approve", "reject"])
def test_a_cli_actor_that_names_no_user_is_audited_as_a_failed_login_over_the_api(
    cli_env: None,
    client: TestClient,
    database: Database,
    pushed: Callable[[str], Path],
    command: str,
) -> None:
    """An --actor no user holds was refused without an audit record, while the API audits a
    caller it cannot authenticate (authentication.failed)."""
    pushed("0.1")
    requester = factories.signed_in(client, database, "operator")
    promotion = _ask(client, requester, "0.1", "production").json()["id"]
    login = client.post("/api/v1/auth/login", json={"username": "nobody", "password": "x" * 16})
    assert login.status_code == 401
    argv = {
        "promote": ["model", "promote", "example_multimodal", "0.1", "--actor", "nobody"],
        "approve": ["model", "approve", str(promotion), "--actor", "nobody"],
        "reject": ["model", "reject", str(promotion), "--actor", "nobody"],
    }[command]

    assert run(argv) == 1

    api, cli = factories.audit_events(database, "authentication.failed")
    assert (cli.category, cli.actor, cli.outcome) == (api.category, api.actor, api.outcome)
    said = json.loads(cli.data)
    assert (said["code"], said["ip"], said["username"]) == ("user_not_found", "cli", "nobody")
    assert "'nobody' not found" in said["reason"]
    assert command in cli.resource
    with database.unit_of_work() as session:
        assert [p.status for p in catalog.list_promotions(session=session)] == ["pending"]
