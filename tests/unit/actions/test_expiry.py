"""An approval deadline holds whenever the approver answers, not only once the sweep ran."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aegis.actions import jobs
from aegis.actions.models import ActionRequest
from tests.support import factories
from tests.support.actions import World, chain_ok, pending_with_hash


def _deadline_passed(world: World, action_id: str) -> datetime:
    deadline = datetime.now(UTC) - timedelta(seconds=1)
    with world.database.unit_of_work() as session:
        row = session.get(ActionRequest, action_id)
        assert row is not None
        row.expires_at = deadline
    return deadline


def _expiries(world: World) -> dict[str, dict[str, Any]]:
    """The ``action.expired`` entries by action id: actor and data, the id left out."""
    found = {}
    for entry in factories.audit_events(world.database, "action.expired"):
        data = json.loads(entry.data)
        found[data.pop("action_id")] = {"actor": entry.actor, "data": data}
    return found


def test_an_approval_after_the_deadline_is_refused_and_expires_the_request(world: World) -> None:
    late, approval = pending_with_hash(world, 5)
    swept, _ = pending_with_hash(world, 5)
    deadline = _deadline_passed(world, late)
    _deadline_passed(world, swept)

    response = world.api.post(
        f"/api/v1/actions/{late}/approve",
        json={"approval_hash": approval},
        headers=world.approver,
    )

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "action_expired"
    assert error["message"] == (
        f"action {late} expired at {deadline.isoformat(timespec='seconds')}; request it again"
    )
    assert world.action(late)["status"] == "expired"
    assert not factories.audit_events(world.database, "action.approved")
    jobs.expire_pending(world.database)  # the sweep expires the other one, not this one again
    expiries = _expiries(world)
    assert sorted(expiries) == sorted([late, swept])
    assert expiries[late] == expiries[swept]  # audited exactly as the sweep does
    world.tick()
    assert world.cluster.deployment("demo", "web")["replicas"] == 3
    chain_ok(world)


def test_a_rejection_after_the_deadline_is_refused_and_expires_the_request(world: World) -> None:
    late, _ = pending_with_hash(world, 4)
    _deadline_passed(world, late)

    response = world.api.post(
        f"/api/v1/actions/{late}/reject", json={"comment": "no"}, headers=world.approver
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "action_expired"
    assert world.action(late)["status"] == "expired"
    assert list(_expiries(world)) == [late]
    assert not factories.audit_events(world.database, "action.rejected")
