"""A dispatch that was interrupted after the executor acted: the request ends as the executor
left the target, never voided, rejected or expired while the action ran.

The real backend app, the real executor app with its ``kubernetes`` backend on the FAKE
Kubernetes API server (``tests/support/fake_kube.py``), the dispatcher driven one tick at a
time. What interrupts a dispatch is outside Aegis: the backend process stopping, the
executor's answer lost on the way back, or a slow API server keeping the executor at work while
the request is sent again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import update

from aegis.actions import jobs
from aegis.actions import service as actions
from aegis.actions.models import ActionRequest
from aegis.executor.app import create_app as executor_app
from aegis.executor.backends.kubernetes import KubernetesBackend
from aegis.executor.client import ExecutorClient
from aegis.executor.errors import ExecutorUnreachable
from aegis.executor.schemas import ExecutorActionRequest, ExecutorActionResult
from tests.support import factories
from tests.support.actions import World, chain_ok
from tests.support.fake_kube import FakeKubeApiServer
from tests.support.pipeline import executor_over
from tests.support.services import free_port


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


@dataclass
class AnswerLostWhileActing:
    """The real executor client, on a network that drops the executor's answer to the first
    real request while the executor is still acting on it (its PATCH stalled at a slow API
    server): the backend sees a read timeout, the executor holds the key in progress."""

    client: ExecutorClient
    kube: FakeKubeApiServer
    first: threading.Thread | None = None

    def submit(self, request: ExecutorActionRequest) -> ExecutorActionResult:
        if request.dry_run or self.first is not None:
            return self.client.submit(request)
        self.kube.stalled_methods = {"PATCH"}
        self.first = threading.Thread(target=self.client.submit, args=(request,))
        self.first.start()
        assert self.kube.stalled.wait(30), "the executor never reached the API server"
        raise ExecutorUnreachable(
            "executor unreachable (ReadTimeout); the action may or may not have run: "
            "retry with the same idempotency key"
        )

    def first_send_ends(self) -> None:
        """The API server answers at last; the executor records the result of the first send."""
        self.kube.release_stalled()
        assert self.first is not None
        self.first.join()


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


def _retry_due_now(world: World, action_id: str) -> None:
    with world.database.unit_of_work() as session:  # skip the backoff wait
        session.execute(
            update(ActionRequest)
            .where(ActionRequest.id == action_id)
            .values(next_attempt_at=datetime.now(UTC))
        )


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


def test_an_action_sent_again_while_the_executor_still_acts_on_it_stays_running(
    world: World, kube: FakeKubeApiServer, executor: ExecutorClient
) -> None:
    action_id = _approved_scale(world, executor)
    slow = AnswerLostWhileActing(executor, kube)
    world.tick(slow)  # the first send: its answer lost, the executor still acting
    _retry_due_now(world, action_id)
    world.tick(executor)  # sent again: the executor answers 409 idempotency_in_progress
    waiting = world.action(action_id)
    slow.first_send_ends()
    _retry_due_now(world, action_id)
    world.tick(executor)

    assert (waiting["status"], waiting["attempts"]) == ("running", 2)
    assert waiting["error"].startswith("executor still acting on it: ")
    done = world.action(action_id)
    assert (done["status"], done["attempts"]) == ("succeeded", 3)
    assert done["result"]["idempotent_replay"] is True
    assert kube.deployment("demo", "web")["spec"]["replicas"] == 5
    assert len(_scale_patches(kube)) == 1
    assert not factories.audit_events(world.database, "action.failed")
    chain_ok(world)


def test_an_action_the_executor_is_still_acting_on_when_attempts_run_out_ends_unknown(
    world: World, kube: FakeKubeApiServer, executor: ExecutorClient
) -> None:
    world.settings = world.settings.model_copy(update={"action_max_attempts": 3})
    action_id = _approved_scale(world, executor)
    slow = AnswerLostWhileActing(executor, kube)
    world.tick(slow)  # attempt 1: the answer lost, the executor still acting
    for _ in range(2):  # attempts 2 and 3: 409 idempotency_in_progress
        _retry_due_now(world, action_id)
        world.tick(executor)
    ended = world.action(action_id)
    slow.first_send_ends()
    _retry_due_now(world, action_id)
    world.tick(executor)  # an ended request is not sent again

    assert (ended["status"], ended["attempts"]) == ("unknown", 3)
    assert ended["error"] == (
        "outcome unknown after 3 attempts: the executor was still acting on it (or stopped "
        "while it did); it may have acted: check the target"
    )
    assert world.action(action_id)["status"] == "unknown"
    assert not factories.audit_events(world.database, "action.failed")
    [unknown] = factories.audit_events(world.database, "action.outcome_unknown")
    assert (unknown.outcome, json.loads(unknown.data)["attempts"]) == ("unknown", 3)
    assert len(_scale_patches(kube)) == 1
    chain_ok(world)


def _unreachable(world: World) -> ExecutorClient:
    """An executor that cannot be reached (nothing listens on its port)."""
    secret = world.settings.secret("executor_hmac_secret")
    return ExecutorClient(f"http://127.0.0.1:{free_port()}", secret, timeout=1)


@contextmanager
def _executor_with(
    world: World, kube: FakeKubeApiServer, **settings: Any
) -> Iterator[ExecutorClient]:
    """The executor redeployed over the same API server with ``settings`` changed; the backend
    signs with the world's secret (a rotated executor secret refuses it: 401)."""
    changed = world.settings.model_copy(
        update={"executor_allowed_namespaces": ["demo"], **settings}
    )
    with TestClient(
        executor_app(changed, backend=KubernetesBackend(kube.api_client())),
        base_url="http://executor",
    ) as http:
        yield ExecutorClient(
            "http://executor", world.settings.secret("executor_hmac_secret"), http=http
        )


def _outcome_unknown(world: World, action_id: str, attempts: int) -> dict[str, Any]:
    """The audit record of ``action_id``'s unknown end (the only one), checked; its data."""
    assert not factories.audit_events(world.database, "action.failed")
    assert not factories.audit_events(world.database, "action.executed")
    [unknown] = factories.audit_events(world.database, "action.outcome_unknown")
    data: dict[str, Any] = json.loads(unknown.data)
    assert (unknown.outcome, data["action_id"], data["attempts"]) == (
        "unknown",
        action_id,
        attempts,
    )
    return data


def test_a_sent_action_whose_retries_find_the_executor_unreachable_ends_unknown(
    world: World, kube: FakeKubeApiServer, executor: ExecutorClient
) -> None:
    world.settings = world.settings.model_copy(update={"action_max_attempts": 3})
    action_id = _approved_scale(world, executor)
    world.tick(AnswerLost(executor))  # attempt 1: the executor acted, its answer lost
    for _ in range(2):  # attempts 2 and 3: the executor cannot be reached
        _retry_due_now(world, action_id)
        world.tick(_unreachable(world))

    ended = world.action(action_id)
    assert kube.deployment("demo", "web")["spec"]["replicas"] == 5  # it had acted
    assert (ended["status"], ended["attempts"]) == ("unknown", 3)
    assert ended["error"] == (
        "outcome unknown after 3 attempts: it was sent but no answer to it was read (the "
        "executor unreachable or unavailable since); it may have acted: check the target"
    )
    data = _outcome_unknown(world, action_id, 3)
    assert data["last_error"].startswith("executor unreachable (ConnectError)")
    assert len(_scale_patches(kube)) == 1
    chain_ok(world)


def test_a_sent_action_whose_retries_the_executor_answers_not_now_ends_unknown(
    world: World, kube: FakeKubeApiServer, executor: ExecutorClient
) -> None:
    world.settings = world.settings.model_copy(update={"action_max_attempts": 3})
    action_id = _approved_scale(world, executor)
    world.tick(AnswerLost(executor))  # attempt 1: the executor acted, its answer lost
    with _executor_with(world, kube, executor_enabled=False) as switched_off:
        for _ in range(2):  # attempts 2 and 3: 503 executor_disabled
            _retry_due_now(world, action_id)
            world.tick(switched_off)

    ended = world.action(action_id)
    assert (ended["status"], ended["attempts"]) == ("unknown", 3)
    data = _outcome_unknown(world, action_id, 3)
    assert data["last_error"].startswith("executor unavailable: ")
    assert kube.deployment("demo", "web")["spec"]["replicas"] == 5
    assert len(_scale_patches(kube)) == 1
    chain_ok(world)


def test_an_action_never_sent_whose_attempts_run_out_still_ends_failed(
    world: World, kube: FakeKubeApiServer, executor: ExecutorClient
) -> None:
    world.settings = world.settings.model_copy(update={"action_max_attempts": 2})
    action_id = _approved_scale(world, executor)
    for _ in range(2):  # the dry run that confirms the approval: unreachable, nothing sent
        _retry_due_now(world, action_id)
        world.tick(_unreachable(world))

    ended = world.action(action_id)
    assert (ended["status"], ended["attempts"]) == ("failed", 2)
    assert kube.deployment("demo", "web")["spec"]["replicas"] == 3
    assert not factories.audit_events(world.database, "action.outcome_unknown")
    assert len(factories.audit_events(world.database, "action.failed")) == 1


@pytest.mark.parametrize(
    ("changed", "answer"),
    [
        ({"executor_hmac_secret": SecretStr("rotated-" + "s" * 40)}, "signature"),  # 401
        ({"executor_allowed_namespaces": ["elsewhere"]}, "namespace 'demo' is not in"),  # 403
        ({"executor_max_replicas": 4}, "replicas 5 is outside the allowed range"),  # 422
    ],
)
def test_an_action_whose_resend_the_executor_refuses_ends_unknown(
    world: World,
    kube: FakeKubeApiServer,
    executor: ExecutorClient,
    changed: dict[str, Any],
    answer: str,
) -> None:
    action_id = _approved_scale(world, executor)
    world.tick(AnswerLost(executor))  # the executor acted, its answer lost
    with _executor_with(world, kube, **changed) as redeployed:
        _retry_due_now(world, action_id)
        world.tick(redeployed)  # sent again: refused

    ended = world.action(action_id)
    assert kube.deployment("demo", "web")["spec"]["replicas"] == 5  # the first send acted
    assert (ended["status"], ended["attempts"]) == ("unknown", 2)
    assert ended["error"].startswith("outcome unknown after 2 attempts: the executor refused ")
    assert answer in ended["error"]
    assert ended["error"].endswith(
        "and the first send's outcome is not known; it may have acted: check the target"
    )
    _outcome_unknown(world, action_id, 2)
    assert len(_scale_patches(kube)) == 1
    chain_ok(world)
