"""Executor fixtures: a FAKE Kubernetes API server, signed requests, the app on a test client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import SecretStr

from aegis.core.config import Settings
from aegis.executor.app import create_app
from aegis.executor.backends.kubernetes import KubernetesBackend
from aegis.executor.schemas import ExecutorActionRequest
from aegis.executor.signing import sign_request
from tests.support.fake_kube import FakeKubeApiServer

SECRET = "test-hmac-secret-" + "c" * 32  # what make_settings configures
PREVIOUS_SECRET = "previous-hmac-secret-" + "p" * 32
WEB_REVISIONS = [{"web": "nginx:1.26"}, {"web": "nginx:1.27"}]


@pytest.fixture
def fake_kube() -> Iterator[FakeKubeApiServer]:
    """The FAKE API server, holding: demo/web (revisions 1 and 2, 3 replicas), demo/api
    (one revision), staging-eu/web, and kube-system/coredns (outside every allow-list)."""
    with FakeKubeApiServer() as fake:
        fake.add_deployment("demo", "web", replicas=3, revisions=WEB_REVISIONS)
        fake.add_deployment("demo", "api", replicas=2, revisions=[{"api": "demo/api:1.4.0"}])
        fake.add_deployment("staging-eu", "web", replicas=2, revisions=WEB_REVISIONS)
        fake.add_deployment(
            "kube-system", "coredns", replicas=2, revisions=[{"coredns": "coredns:1.11"}]
        )
        yield fake


@pytest.fixture
def kube_backend(fake_kube: FakeKubeApiServer) -> Iterator[KubernetesBackend]:
    backend = KubernetesBackend(fake_kube.api_client())
    yield backend
    backend.close()


def action_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "action_id": "act-1",
        "action": "scale_deployment",
        "namespace": "demo",
        "name": "web",
        "params": {"replicas": 5},
        "idempotency_key": "idem-1",
        "dry_run": False,
        "requested_by": "alice",
    }
    body.update(overrides)
    return body


def action_request(
    action: str, *, name: str = "web", dry_run: bool = False, **params: int
) -> ExecutorActionRequest:
    """A backend's request: ``action`` on deployment demo/``name`` (:func:`action_body`'s ids)."""
    return ExecutorActionRequest.model_validate(
        action_body(action=action, name=name, dry_run=dry_run, params=params)
    )


@dataclass
class ExecutorHarness:
    client: TestClient
    fake: FakeKubeApiServer
    settings: Settings
    sent: list[dict[str, str]] = field(default_factory=list)

    def post(
        self,
        body: dict[str, Any] | bytes,
        *,
        secret: str = SECRET,
        timestamp: int | None = None,
        nonce: str | None = None,
        headers: dict[str, str] | None = None,
        send_body: bytes | None = None,
        path: str = "/v1/actions",
    ) -> Response:
        """POST ``path`` signed with ``secret``; ``send_body`` is sent instead of ``body``."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        signed = sign_request(
            secret=secret,
            method="POST",
            path=path,
            body=raw,
            timestamp=int(time.time()) if timestamp is None else timestamp,
            nonce=nonce,
        )
        if headers is not None:
            signed = headers
        self.sent.append(signed)
        response: Response = self.client.post(
            path,
            content=send_body if send_body is not None else raw,
            headers={**signed, "Content-Type": "application/json"},
        )
        return response


@pytest.fixture
def make_executor(
    make_settings: Callable[..., Settings], db_url: str, fake_kube: FakeKubeApiServer
) -> Iterator[Callable[..., ExecutorHarness]]:
    """Build the executor app on the test database, acting on the fake cluster."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> ExecutorHarness:
        values: dict[str, Any] = {
            "database_url": db_url,
            "executor_backend": "kubernetes",
            "executor_hmac_secret_previous": SecretStr(PREVIOUS_SECRET),
        }
        values.update(overrides)
        settings = make_settings(**values)
        app = create_app(settings, backend=KubernetesBackend(fake_kube.api_client()))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return ExecutorHarness(client=client, fake=fake_kube, settings=settings)

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def executor(make_executor: Callable[..., ExecutorHarness]) -> ExecutorHarness:
    return make_executor()
