"""A dispatch that was interrupted after the executor acted: the request ends as the executor
left the target, never voided, rejected or expired while the action ran.

The real backend app, the real executor app with its ``kubernetes`` backend on the FAKE
Kubernetes API server (``tests/support/fake_kube.py``), the dispatcher driven one tick at a
time. What interrupts a dispatch is outside Aegis: the backend process stopping, or the
executor's answer lost on the way back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from aegis.actions import jobs
from aegis.actions import service as actions
from aegis.actions.models import ActionRequest
from aegis.executor.client import ExecutorClient
from aegis.executor.errors import ExecutorUnreachable
from aegis.executor.schemas import ExecutorActionRequest, ExecutorActionResult
from tests.support import factories
from tests.support.actions import World, chain_ok
from tests.support.fake_kube import FakeKubeApiServer
from tests.support.pipeline import executor_over


class BackendStopped(BaseException):
    """The backend process ends here (a BaseException: nothing in the dispatcher catches it)."""


@dataclass
class StopsAfterSending:
    """The real executor client in a backend that stops as soon as its real (not dry-run)
    request has reached the executor, before it reads the answer."""

    client: ExecutorClient

    def submit(self, request: ExecutorActionRequest) -> ExecutorActionResult:
        result = self.client.submit(request)
        if not request.dry_run:
            raise BackendStopped
        return result


@dataclass
class AnswerLost:
    """The real executor client, on a network that drops the executor's answer to the first
    real request (the executor acted; the backend sees a broken connection)."""

    client: ExecutorClient
    lost: int = 0

    def submit(self, request: ExecutorActionRequest) -> ExecutorActionResult:
        result = self.client.submit(request)
        if not request.dry_run and self.lost == 0:
            self.lost += 1
            raise ExecutorUnreachable(
                "executor unreachable (ReadTimeout); the action may or may not have run: "
                "retry with the same idempotency key"
            )
        return result


@pytest.fixture
def kube() -> Iterator[FakeKubeApiServer]:
    with FakeKubeApiServer() as fake:
        fake.add_deployment("demo", "web", replicas=3)
        yield fake


@pytest.fixture
def executor(world: World, kube: FakeKubeApiServer) -> Iterator[ExecutorClient]:
    settings = world.settings.model_copy(update={"executor_allowed_namespaces": ["demo"]})
    with executor_over(settings, kube) as client:
        yield client


def _approved_scale(world: World, executor: ExecutorClient) -> str:
    """demo/web 3 -> 5, dry-run and approved by a second person."""
    action_id: str = world.request(action="scale_deployment", params={"replicas": 5}).json()["id"]
    world.tick(executor)  # the dry run fills in the hash to approve
    approval_hash = world.action(action_id)["approval_hash"]
    approved = world.api.post(
        f"/api/v1/actions/{action_id}/approve",
        json={"approval_hash": approval_hash},
        headers=world.approver,
    )
    assert approved.status_code == 200, approved.text
    return action_id


def _lease_runs_out(world: World, action_id: str) -> None:
    with world.database.unit_of_work() as session:
        request = actions.get(session=session, action_id=action_id)
        request.updated_at = actions.now() - timedelta(seconds=jobs.RUNNING_LEASE_S + 1)


def _scale_patches(kube: FakeKubeApiServer) -> list[str]:
    """The scale changes the cluster stored (dry runs left out)."""
    return [
        r.path
        for r in kube.mutating_requests()
        if r.path.endswith("/scale") and "dryRun" not in r.query
    ]


def test_a_reclaimed_approved_action_the_executor_ran_ends_as_it_ran(
    world: World, kube: FakeKubeApiServer, executor: ExecutorClient
) -> None:
    action_id = _approved_scale(world, executor)
    with pytest.raises(BackendStopped):
        world.tick(StopsAfterSending(executor))
    assert kube.deployment("demo", "web")["spec"]["replicas"] == 5  # the executor acted

    _lease_runs_out(world, action_id)
    world.tick(executor)

    done = world.action(action_id)
    assert (done["status"], done["approved_by"]) == ("succeeded", world.approver_name)
    assert done["result"]["idempotent_replay"] is True
    assert done["result"]["diff"] == [{"path": "spec.replicas", "before": 3, "after": 5}]
    assert len(_scale_patches(kube)) == 1
    assert not factories.audit_events(world.database, "action.approval_voided")
    reclaimed = factories.audit_events(world.database, "action.dispatch_reclaimed")
    assert [json.loads(e.data)["action_id"] for e in reclaimed] == [action_id]
    chain_ok(world)


def test_an_approved_action_whose_answer_was_lost_ends_as_it_ran(
    world: World, kube: FakeKubeApiServer, executor: ExecutorClient
) -> None:
    action_id = _approved_scale(world, executor)
    world.tick(AnswerLost(executor))
    waiting = world.action(action_id)
    assert kube.deployment("demo", "web")["spec"]["replicas"] == 5  # the executor acted
    with world.database.unit_of_work() as session:  # skip the backoff wait
        session.execute(
            update(ActionRequest)
            .where(ActionRequest.id == action_id)
            .values(next_attempt_at=datetime.now(UTC))
        )
    world.tick(executor)

    assert "unreachable" in waiting["error"] and waiting["approved_by"] == world.approver_name
    done = world.action(action_id)
    assert (done["status"], done["attempts"]) == ("succeeded", 2)
    assert done["result"]["idempotent_replay"] is True
    assert len(_scale_patches(kube)) == 1
    assert not factories.audit_events(world.database, "action.approval_voided")
    chain_ok(world)
