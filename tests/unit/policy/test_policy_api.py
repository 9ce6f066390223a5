"""The policy store over the API: versions, restore, evaluation, digest, audit, roles."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from aegis.audit.models import AuditEntry
from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.policy import service as policy_service
from aegis.policy.loader import parse_policy
from tests.support import factories
from tests.support.races import at_once, race

STAGING = {
    "id": "staging-restarts",
    "description": "AI may restart in staging when confident",
    "effect": "allow",
    "subjects": ["role:operator", "principal:ai-engine"],
    "actions": ["restart_deployment", "scale_deployment"],
    "resources": {"namespaces": ["staging-*"], "names": ["*"]},
    "conditions": {"min_confidence": 0.8, "replicas": {"min": 1, "max": 10}},
}
FREEZE_YAML = """
id: kube-system-freeze
effect: deny
subjects: ["*"]
actions: ["*"]
resources: {namespaces: ["kube-*"], names: ["*"]}
"""


@pytest.fixture
def client(make_settings: Callable[..., Settings], db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url=db_url))) as c:
        yield c


@pytest.fixture
def admin(client: TestClient, database: Database) -> dict[str, str]:
    return factories.signed_in(client, database, "admin")


def _evaluate(client: TestClient, headers: dict[str, str], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": "role:operator",
        "action": "restart_deployment",
        "resource": {"namespace": "staging-a", "name": "web"},
        "context": {"confidence": 0.9},
    }
    body.update(over)
    response = client.post("/api/v1/policy/evaluate", json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_create_evaluate_and_default_deny(client: TestClient, admin: dict[str, str]) -> None:
    assert _evaluate(client, admin)["decision"] == "deny"  # nothing allows it yet
    created = client.post("/api/v1/policy", json=STAGING, headers=admin)
    assert created.status_code == 201 and created.json()["version"] == 1
    result = _evaluate(client, admin)
    assert result["decision"] == "allow"
    assert result["policies"] == [{"id": "staging-restarts", "version": 1}]
    low = _evaluate(client, admin, context={"confidence": 0.5})
    assert low["decision"] == "deny"


def test_yaml_documents_and_deny_wins_with_a_reason(
    client: TestClient, admin: dict[str, str]
) -> None:
    client.post(
        "/api/v1/policy",
        json={**STAGING, "resources": {"namespaces": ["*"], "names": ["*"]}},
        headers=admin,
    )
    response = client.post(
        "/api/v1/policy", content=FREEZE_YAML, headers={**admin, "Content-Type": "application/yaml"}
    )
    assert response.status_code == 201
    result = _evaluate(client, admin, resource={"namespace": "kube-system", "name": "dns"})
    assert result["decision"] == "deny"
    assert "kube-system-freeze v1" in result["reason"]


def test_update_adds_a_version_and_restore_brings_an_old_one_back(
    client: TestClient, admin: dict[str, str]
) -> None:
    client.post("/api/v1/policy", json=STAGING, headers=admin)
    changed = client.put(
        "/api/v1/policy/staging-restarts",
        json={**STAGING, "effect": "require_approval"},
        headers=admin,
    )
    assert changed.json()["version"] == 2
    assert _evaluate(client, admin)["decision"] == "require_approval"
    versions = client.get("/api/v1/policy/staging-restarts/versions", headers=admin).json()
    assert [(v["version"], v["change"]) for v in versions] == [(1, "create"), (2, "update")]
    restored = client.post("/api/v1/policy/staging-restarts/versions/1/restore", headers=admin)
    assert restored.json()["version"] == 3
    assert _evaluate(client, admin)["decision"] == "allow"


@pytest.mark.parametrize("version", [2, 2**31 - 1, 2**31, 3_000_000_000, 2**63 - 1])
def test_restoring_a_version_that_does_not_exist_is_not_found_on_every_database(
    client: TestClient, admin: dict[str, str], version: int
) -> None:
    """policy_versions.version is a 32-bit integer: PostgreSQL refused to compare a larger
    one (422 invalid_value) where SQLite found nothing (404)."""
    client.post("/api/v1/policy", json=STAGING, headers=admin)
    response = client.post(
        f"/api/v1/policy/staging-restarts/versions/{version}/restore", headers=admin
    )
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "policy_not_found"
    assert f"has no version {version}" in response.json()["error"]["message"]


def test_delete_deactivates_and_changes_the_digest(
    client: TestClient, admin: dict[str, str]
) -> None:
    empty = client.get("/api/v1/policy/digest", headers=admin).json()["digest"]
    client.post("/api/v1/policy", json=STAGING, headers=admin)
    one = client.get("/api/v1/policy/digest", headers=admin).json()
    assert one["digest"] != empty and one["policies"] == 1
    assert client.delete("/api/v1/policy/staging-restarts", headers=admin).status_code == 204
    assert client.get("/api/v1/policy/staging-restarts", headers=admin).status_code == 404
    assert client.get("/api/v1/policy/digest", headers=admin).json()["digest"] == empty


def test_schema_errors_name_the_bad_field(client: TestClient, admin: dict[str, str]) -> None:
    bad = {**STAGING, "conditions": {"replicas": {"min": -1}}}
    response = client.post("/api/v1/policy", json=bad, headers=admin)
    assert response.status_code == 422
    assert "conditions.replicas.min" in response.json()["error"]["message"]
    unknown = client.post("/api/v1/policy", json={**STAGING, "colour": "red"}, headers=admin)
    assert unknown.status_code == 422


def test_a_yaml_body_with_a_control_character_is_a_422_naming_its_line(
    client: TestClient, admin: dict[str, str]
) -> None:
    body = FREEZE_YAML.replace("effect: deny", "effect: deny\x00")
    yaml_type = {**admin, "Content-Type": "application/yaml"}
    response = client.post("/api/v1/policy", content=body, headers=yaml_type)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "policy_parse_error"
    assert response.json()["error"]["message"].startswith("body:3: invalid YAML: character #x0000")


def test_a_number_too_long_to_read_is_a_422(client: TestClient, admin: dict[str, str]) -> None:
    body = '{"id": "a", "version": ' + "1" * 5000 + "}"
    json_type = {**admin, "Content-Type": "application/json"}
    response = client.post("/api/v1/policy", content=body, headers=json_type)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "policy_parse_error"


def test_bad_evaluation_request_is_422(client: TestClient, admin: dict[str, str]) -> None:
    response = client.post(
        "/api/v1/policy/evaluate",
        headers=admin,
        json={
            "subject": "role:operator",
            "action": "format_disk",
            "resource": {"namespace": "a", "name": "b"},
        },
    )
    assert response.status_code == 422
    assert "action" in response.json()["error"]["message"]


def test_an_evaluation_at_a_time_beyond_utc_is_a_422(
    client: TestClient, admin: dict[str, str]
) -> None:
    # 9999-12-31T23:59-14:00 is year 10000 in UTC: converting it raised OverflowError, a 500.
    response = client.post(
        "/api/v1/policy/evaluate",
        headers=admin,
        json={
            "subject": "role:operator",
            "action": "restart_deployment",
            "resource": {"namespace": "a", "name": "b"},
            "context": {"now": "9999-12-31T23:59:00-14:00"},
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"] == (
        "request: context.now: is out of range in UTC (years 1 to 9999)"
    )


def test_changes_and_evaluations_are_audited(
    client: TestClient, admin: dict[str, str], database: Database
) -> None:
    client.post("/api/v1/policy", json=STAGING, headers=admin)
    _evaluate(client, admin)
    with database.unit_of_work() as session:
        types = [
            e.event_type
            for e in session.scalars(
                select(AuditEntry).where(AuditEntry.category == "policy").order_by(AuditEntry.seq)
            )
        ]
    assert types == ["policy.create", "policy.evaluated"]


def test_only_admins_change_policies(client: TestClient, database: Database) -> None:
    operator = factories.signed_in(client, database, "operator")
    assert client.post("/api/v1/policy", json=STAGING, headers=operator).status_code == 403
    assert client.get("/api/v1/policy", headers=operator).status_code == 200


@pytest.mark.parametrize("username", ["_ops", ".ops", "-ops", "@ops"])
def test_a_user_whose_name_starts_with_a_symbol_is_decided_and_can_be_named(
    client: TestClient, admin: dict[str, str], database: Database, username: str
) -> None:
    # Usernames may start with '_', '.', '@' or '-'; the subject grammar refused user:_ops, so
    # every action request of such a user was a 422 and no policy could name them.
    named = {**STAGING, "subjects": [f"user:{username}"]}
    assert client.post("/api/v1/policy", json=named, headers=admin).status_code == 201
    user = factories.bearer(
        factories.login(client, factories.user(database, "operator", username=username))
    )
    response = client.post(
        "/api/v1/actions",
        headers=user,
        json={
            "action": "restart_deployment",
            "namespace": "staging-a",
            "name": "web",
            "idempotency_key": "symbol-1",
            "confidence": 0.9,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["decision"] == "allow"


def test_replay_shows_what_a_candidate_set_would_change(
    client: TestClient, admin: dict[str, str], database: Database
) -> None:
    client.post("/api/v1/policy", json=STAGING, headers=admin)
    operator = factories.signed_in(client, database, "operator")
    action = client.post(
        "/api/v1/actions",
        headers=operator,
        json={
            "action": "restart_deployment",
            "namespace": "staging-a",
            "name": "web",
            "idempotency_key": "replay-1",
            "confidence": 0.9,
        },
    ).json()
    assert action["decision"] == "allow"
    freeze = {**STAGING, "id": "freeze", "effect": "deny"}
    replay = client.post(
        "/api/v1/policy/replay",
        headers=admin,
        json={"since": "2000-01-01T00:00:00Z", "policies": [STAGING, freeze]},
    ).json()
    assert (replay["replayed"], replay["changed"]) == (1, 1)
    assert replay["rows"][0]["recorded"] == "allow" and replay["rows"][0]["candidate"] == "deny"
    same = client.post(
        "/api/v1/policy/replay", headers=admin, json={"since": "2000-01-01T00:00:00Z"}
    ).json()
    assert same["changed"] == 0


def test_two_changes_to_one_policy_at_once_take_versions_one_after_the_other(
    database: Database,
) -> None:
    with database.unit_of_work() as session:
        policy_service.create(session=session, policy=parse_policy(STAGING), actor="alice")

    def update_meanwhile() -> int | None:
        edited = parse_policy({**STAGING, "description": "bob's edit"})
        with database.unit_of_work() as session:
            return policy_service.update(
                session=session, policy_id=str(STAGING["id"]), policy=edited, actor="bob"
            ).version

    with database.unit_of_work() as session:
        edited = parse_policy({**STAGING, "description": "alice's edit"})
        policy_service.update(
            session=session, policy_id=str(STAGING["id"]), policy=edited, actor="alice"
        )
        racing = race(update_meanwhile)
        assert racing.waiting, racing.result  # without the row lock it took version 2 too

    assert racing.done() == 3
    with database.unit_of_work() as session:
        history = policy_service.versions(session=session, policy_id=str(STAGING["id"]))
        assert [(v.version, v.created_by) for v in history] == [
            (1, "alice"),
            (2, "alice"),
            (3, "bob"),
        ]


# On SQLite every transaction takes the one write lock at BEGIN (aegis.database.core): readers
# and writers take turns there by design.
@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_reading_a_policy_does_not_wait_for_a_change_in_progress(database: Database) -> None:
    """A viewer's read (GET /api/v1/policy/ID, its versions) sees the last committed version at
    once; it neither waits behind an admin's open change nor holds one up."""
    with database.unit_of_work() as session:
        policy_service.create(session=session, policy=parse_policy(STAGING), actor="alice")

    def read_meanwhile() -> tuple[int, list[int]]:
        with database.unit_of_work() as session:
            row, _ = policy_service.get(session=session, policy_id=str(STAGING["id"]))
            history = policy_service.versions(session=session, policy_id=str(STAGING["id"]))
            return row.current_version, [v.version for v in history]

    with database.unit_of_work() as session:
        edited = parse_policy({**STAGING, "description": "alice's edit"})
        policy_service.update(
            session=session, policy_id=str(STAGING["id"]), policy=edited, actor="alice"
        )
        reading = race(read_meanwhile)
        assert not reading.waiting  # with a row lock the read waited for this transaction

    assert reading.done() == (1, [1])


def test_a_policy_created_twice_at_once_is_created_once(database: Database) -> None:

    def create(actor: str) -> str:
        try:
            with database.unit_of_work() as session:
                policy_service.create(session=session, policy=parse_policy(STAGING), actor=actor)
        except policy_service.PolicyExists:
            return "exists"
        return "created"

    results = at_once([lambda: create("alice"), lambda: create("bob")])
    assert sorted(results) == ["created", "exists"]
