"""A ``max_actions`` limit holds: "at most one change an hour" means at most one change an hour,
however the requests, approvals and writers interleave (docs/policy.md, "Recent actions")."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from aegis.actions import service as actions
from aegis.actions.errors import ApprovalRefused
from aegis.actions.schemas import ActionCreate
from aegis.auth.schemas import Actor
from tests.support import factories
from tests.support.actions import World, chain_ok
from tests.support.races import race

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
                actions.approve(
                    session=session, action_id=restart_id, actor=other, presented_hash=restart_hash
                )
        except ApprovalRefused:
            return "refused"
        return "approved"

    with world.database.unit_of_work() as session:
        actions.approve(
            session=session, action_id=scale_id, actor=approver, presented_hash=scale_hash
        )
        racing = race(approve_restart)  # another approver, the same moment

    assert racing.done() == "refused"
    assert world.action(restart_id)["status"] == "pending_approval"
