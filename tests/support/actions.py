"""The actions tests' world: the real backend app and the real executor app (its `local`
backend, in-process over ASGI), an operator and an approver signed in, and the dispatcher
driven one tick at a time."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi.testclient import TestClient

from aegis.actions import jobs, sending
from aegis.audit import verify
from aegis.backend_app import create_app
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.executor.app import create_app as executor_app
from aegis.executor.backends.local import LocalCluster, default_state_path
from aegis.executor.client import ExecutorClient
from tests.support import factories

_KEYS = itertools.count(1)

POLICIES: list[dict[str, Any]] = [
    {
        "id": "demo-restarts",
        "effect": "allow",
        "subjects": ["role:operator"],
        "actions": ["restart_deployment", "delete_pod"],
        "resources": {"namespaces": ["demo"], "names": ["*"]},
    },
    {
        "id": "demo-scaling",
        "effect": "require_approval",
        "subjects": ["role:operator"],
        "actions": ["scale_deployment"],
        "resources": {"namespaces": ["demo"], "names": ["*"]},
    },
    {
        "id": "kube-freeze",
        "effect": "deny",
        "subjects": ["*"],
        "actions": ["*"],
        "resources": {"namespaces": ["kube-*"], "names": ["*"]},
    },
]


@dataclass
class World:
    api: TestClient
    settings: Settings
    database: Database
    executor: ExecutorClient
    cluster: LocalCluster
    operator: dict[str, str]
    approver: dict[str, str]
    approver_name: str
    operator_name: str

    def request(self, **over: Any) -> httpx.Response:
        body = {
            "action": "restart_deployment",
            "namespace": "demo",
            "name": "web",
            "params": {},
            "idempotency_key": f"k-{next(_KEYS)}",  # a new request unless a test names one
            "reason": "test",
        }
        body.update(over)
        sent: httpx.Response = self.api.post("/api/v1/actions", json=body, headers=self.operator)
        return sent

    def tick(self, executor: sending.Executor | None = None) -> None:
        jobs.tick(self.database, self.settings, executor or self.executor)

    def action(self, action_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.api.get(
            f"/api/v1/actions/{action_id}", headers=self.operator
        ).json()
        return body


@contextmanager
def world_of(settings: Settings, database: Database) -> Iterator[World]:
    """The world of ``settings`` (``executor_backend="local"``), holding :data:`POLICIES`."""
    with (
        TestClient(create_app(settings)) as api,
        TestClient(executor_app(settings), base_url="http://executor") as ex,
    ):
        admin = factories.signed_in(api, database, "admin")
        for policy in POLICIES:
            assert api.post("/api/v1/policy", json=policy, headers=admin).status_code == 201
        operator_name = factories.user(database, "operator")
        approver_name = factories.user(database, "approver")
        client = ExecutorClient("http://executor", settings.secret("executor_hmac_secret"), http=ex)
        yield World(
            api=api,
            settings=settings,
            database=database,
            executor=client,
            cluster=LocalCluster(default_state_path(settings.data_dir)),
            operator=factories.bearer(factories.login(api, operator_name)),
            approver=factories.bearer(factories.login(api, approver_name)),
            approver_name=approver_name,
            operator_name=operator_name,
        )


def chain_ok(world: World) -> None:
    with world.database.unit_of_work() as session:
        report = verify.verify(session=session, store=None, public_key=None)
    assert report.ok, report.problems


def pending_with_hash(world: World, replicas: int) -> tuple[str, str]:
    """A scale request pending approval, dry-run: its id and the hash to approve."""
    action = world.request(action="scale_deployment", params={"replicas": replicas}).json()
    world.tick()  # the dry run fills in the hash to approve
    return str(action["id"]), str(world.action(action["id"])["approval_hash"])
