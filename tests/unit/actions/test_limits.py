"""A ``max_actions`` limit holds: "at most one change an hour" means at most one change an hour,
however the requests, approvals and writers interleave (docs/policy.md, "Recent actions")."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from aegis.actions import approvals, jobs
from aegis.actions import service as actions
from aegis.actions.errors import ApprovalRefused
from aegis.actions.models import ActionRequest
from aegis.actions.schemas import ActionCreate
from aegis.auth.schemas import Actor
from aegis.executor.app import create_app as executor_app
from aegis.executor.client import ExecutorClient
from aegis.flags import service as flags
from tests.support import factories
from tests.support.actions import World, chain_ok
from tests.support.races import race
from tests.support.services import free_port

# Every change to demo/worker needs a person's approval; demo/api and demo/worker take at most
# one change an hour (restarts of demo/api are allowed outright by the world's demo-restarts).
LIMITS: list[dict[str, Any]] = [
    {
        "id": "worker-gated",
        "effect": "require_approval",
        "subjects": ["role:operator"],
        "actions": ["*"],
        "resources": {"namespaces": ["demo"], "names": ["worker"]},
    },
    {
        "id": "one-change-an-hour",
        "effect": "deny",
        "subjects": ["*"],
        "actions": ["*"],
        "resources": {"namespaces": ["demo"], "names": ["api", "worker"]},
        "unless": {"max_actions": {"count": 1, "per_minutes": 60}},
    },
]
REACHED = "1 recent action on the target reaches the limit of 1 per 60 min"


@pytest.fixture
def limited(world: World) -> World:
    admin = factories.signed_in(world.api, world.database, "admin")
    for policy in LIMITS:
        assert world.api.post("/api/v1/policy", json=policy, headers=admin).status_code == 201
    return world


def _pending(world: World, key: str, **over: Any) -> tuple[str, str]:
    """A request on demo/worker, pending approval and dry-run: its id and the hash to approve."""
    action = world.request(name="worker", idempotency_key=key, **over).json()
    assert action["status"] == "pending_approval", action
    world.tick()
    return str(action["id"]), str(world.action(action["id"])["approval_hash"])


def _approve(world: World, action_id: str, approval: str) -> httpx.Response:
    sent: httpx.Response = world.api.post(
        f"/api/v1/actions/{action_id}/approve",
        json={"approval_hash": approval},
        headers=world.approver,
    )
    return sent


def test_a_second_change_pending_at_the_same_time_cannot_be_approved(limited: World) -> None:
    world = limited
    revision = world.cluster.deployment("demo", "worker")["revision"]
    scale = _pending(world, "scale", action="scale_deployment", params={"replicas": 2})
    restart = _pending(world, "restart")  # evaluated while nothing had run: pending too

    first = _approve(world, *scale)
    second = _approve(world, *restart)
    world.tick()

    assert first.status_code == 200
    assert second.status_code == 409
    error = second.json()["error"]
    assert error["code"] == "approval_refused"
    assert error["message"].startswith(f"action {restart[0]} cannot be approved now: ")
    assert REACHED in error["message"]
    assert world.action(restart[0])["status"] == "pending_approval"
    refused = factories.audit_events(world.database, "action.approval_refused")
    assert [json.loads(e.data)["action_id"] for e in refused] == [restart[0]]
    assert REACHED in json.loads(refused[0].data)["reason"]
    worker = world.cluster.deployment("demo", "worker")
    assert (worker["replicas"], worker["revision"]) == (2, revision)  # scaled, not restarted
    chain_ok(world)


def _requesting(world: World, key: str) -> Callable[[], str]:
    """A restart of demo/api requested in its own transaction; the status it was given."""
    operator = Actor(name=world.operator_name, roles=frozenset({"operator"}))
    body = ActionCreate(
        action="restart_deployment", namespace="demo", name="api", idempotency_key=key
    )

    def request() -> str:
        with world.database.unit_of_work() as session:
            made, _ = actions.request_action(
                session=session, settings=world.settings, body=body, actor=operator
            )
            return made.status

    return request


def test_two_requests_at_once_do_not_both_pass_a_limit(limited: World) -> None:
    world = limited
    with world.database.unit_of_work() as session:
        operator = Actor(name=world.operator_name, roles=frozenset({"operator"}))
        body = ActionCreate(
            action="restart_deployment", namespace="demo", name="api", idempotency_key="first"
        )
        first, _ = actions.request_action(
            session=session, settings=world.settings, body=body, actor=operator
        )
        racing = race(_requesting(world, "second"))  # another backend, the same moment

    assert (first.status, racing.done()) == ("approved", "denied")


def test_two_approvals_at_once_do_not_both_pass_a_limit(limited: World) -> None:
    world = limited
    scale_id, scale_hash = _pending(
        world, "scale", action="scale_deployment", params={"replicas": 2}
    )
    restart_id, restart_hash = _pending(world, "restart")
    approver = Actor(name=world.approver_name, roles=frozenset({"approver"}))
    other = Actor(name=factories.user(world.database, "approver"), roles=frozenset({"approver"}))

    def approve_restart() -> str:
        try:
            with world.database.unit_of_work() as session:
                approvals.approve(
                    session=session, action_id=restart_id, actor=other, presented_hash=restart_hash
                )
        except ApprovalRefused:
            return "refused"
        return "approved"

    with world.database.unit_of_work() as session:
        approvals.approve(
            session=session, action_id=scale_id, actor=approver, presented_hash=scale_hash
        )
        racing = race(approve_restart)  # another approver, the same moment

    assert racing.done() == "refused"
    assert world.action(restart_id)["status"] == "pending_approval"


def _hours_ago(world: World, action_id: str, hours: float) -> None:
    """Make ``action_id`` requested (and last changed) ``hours`` ago; a pending one's deadline,
    as a longer ``ACTION_APPROVAL_TTL_S`` would have it, still an hour ahead."""
    then, now = datetime.now(UTC) - timedelta(hours=hours), datetime.now(UTC)
    with world.database.unit_of_work() as session:
        session.execute(
            update(ActionRequest)
            .where(ActionRequest.id == action_id)
            .values(created_at=then, updated_at=then)
        )
        session.execute(
            update(ActionRequest)
            .where(ActionRequest.id == action_id, ActionRequest.expires_at.is_not(None))
            .values(expires_at=now + timedelta(hours=1))
        )


def test_a_change_approved_long_after_it_was_requested_counts_from_when_it_ran(
    limited: World,
) -> None:
    world = limited
    restart_id, approval = _pending(world, "restart")
    _hours_ago(world, restart_id, 2)  # requested two hours ago, approved now
    assert _approve(world, restart_id, approval).status_code == 200
    world.tick()
    assert world.action(restart_id)["status"] == "succeeded"

    scale = world.request(
        name="worker", action="scale_deployment", params={"replicas": 2}, idempotency_key="scale"
    ).json()

    assert scale["status"] == "denied"
    assert REACHED in scale["decision_reason"]


def _kill_switch(world: World, value: str) -> None:
    with world.database.unit_of_work() as session:
        flags.set_flag(session=session, name=jobs.KILL_SWITCH_FLAG, value=value, actor="t")


def test_a_change_held_by_the_kill_switch_counts_however_long_it_waits(limited: World) -> None:
    world = limited
    revision = world.cluster.deployment("demo", "api")["revision"]
    _kill_switch(world, "false")
    held = world.request(name="api", idempotency_key="held").json()
    assert held["status"] == "approved"
    _hours_ago(world, held["id"], 2)  # allowed two hours ago, held since

    second = world.request(name="api", idempotency_key="second").json()
    _kill_switch(world, "true")
    world.tick()

    assert second["status"] == "denied"
    assert REACHED in second["decision_reason"]
    assert world.cluster.deployment("demo", "api")["revision"] == revision + 1


def test_a_change_sent_without_an_answer_counts(limited: World) -> None:
    world = limited
    settings = world.settings.model_copy(update={"action_max_attempts": 1})
    down = ExecutorClient(  # it may have acted before the connection failed
        f"http://127.0.0.1:{free_port()}", settings.secret("executor_hmac_secret"), timeout=1
    )
    first = world.request(name="api", idempotency_key="first").json()
    jobs.tick(world.database, settings, down)
    assert world.action(first["id"])["status"] == "unknown"  # sent: it may have acted

    second = world.request(name="api", idempotency_key="second").json()

    assert second["status"] == "denied"
    assert REACHED in second["decision_reason"]


@contextmanager
def _refusing_executor(world: World) -> Iterator[ExecutorClient]:
    """A real executor whose allow-list leaves out the world's namespace: 403, nothing runs."""
    settings = world.settings.model_copy(update={"executor_allowed_namespaces": ["elsewhere"]})
    with TestClient(executor_app(settings), base_url="http://executor") as http:
        yield ExecutorClient("http://executor", settings.secret("executor_hmac_secret"), http=http)


def test_a_change_the_executor_refused_before_acting_does_not_count(limited: World) -> None:
    world = limited
    revision = world.cluster.deployment("demo", "api")["revision"]
    first = world.request(name="api", idempotency_key="first").json()
    with _refusing_executor(world) as refusing:
        world.tick(refusing)  # its first send: 403 namespace_not_allowed
    refused = world.action(first["id"])

    second = world.request(name="api", idempotency_key="second").json()

    assert refused["status"] == "refused"
    assert refused["error"].startswith("executor refused: namespace 'demo' is not in")
    assert second["status"] == "approved", second["decision_reason"]
    assert world.cluster.deployment("demo", "api")["revision"] == revision


def test_an_approved_change_the_executor_refused_to_dry_run_again_does_not_count(
    limited: World,
) -> None:
    world = limited
    scale = _pending(world, "scale", action="scale_deployment", params={"replicas": 2})
    assert _approve(world, *scale).status_code == 200
    with _refusing_executor(world) as refusing:
        world.tick(refusing)  # the dry run that confirms the approval: 403
    refused = world.action(scale[0])

    restart = world.request(name="worker", idempotency_key="restart").json()

    assert (refused["status"], refused["result"]) == ("refused", None)
    assert restart["status"] == "pending_approval", restart["decision_reason"]


def test_a_change_of_unknown_outcome_counts(limited: World) -> None:
    world = limited
    first = world.request(name="api", idempotency_key="first").json()
    with world.database.unit_of_work() as session:  # as the dispatcher leaves one (it may have
        session.execute(  # acted: the executor was still acting on it when attempts ran out)
            update(ActionRequest)
            .where(ActionRequest.id == first["id"])
            .values(status="unknown", updated_at=datetime.now(UTC))
        )

    second = world.request(name="api", idempotency_key="second").json()

    assert second["status"] == "denied"
    assert REACHED in second["decision_reason"]


def test_replaying_the_active_set_decides_as_the_live_requests_did(limited: World) -> None:
    world = limited
    scale = _pending(world, "scale", action="scale_deployment", params={"replicas": 2})
    _hours_ago(world, scale[0], 2)
    restart = _pending(world, "restart")  # pending beside the scale, refused once it ran
    assert _approve(world, *scale).status_code == 200
    world.tick()
    assert _approve(world, *restart).status_code == 409
    again = world.request(
        name="worker", action="scale_deployment", params={"replicas": 3}, idempotency_key="again"
    ).json()
    assert again["status"] == "denied"  # the first scale ran moments ago
    admin = factories.signed_in(world.api, world.database, "admin")

    replayed = world.api.post(
        "/api/v1/policy/replay",
        headers=admin,
        json={"since": (datetime.now(UTC) - timedelta(hours=3)).isoformat(), "all": True},
    ).json()

    assert [(r["action_id"], r["recorded"], r["candidate"]) for r in replayed["rows"]] == [
        (scale[0], "require_approval", "require_approval"),
        (restart[0], "require_approval", "require_approval"),
        (again["id"], "deny", "deny"),
    ]
