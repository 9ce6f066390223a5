"""The executor as the backend's prediction job reaches it in tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from aegis.core.config import Settings
from aegis.executor.app import create_app as executor_app
from aegis.executor.backends.kubernetes import KubernetesBackend
from aegis.executor.client import ExecutorClient
from tests.support.fake_kube import FakeKubeApiServer


@contextmanager
def executor_over(settings: Settings, fake: FakeKubeApiServer) -> Iterator[ExecutorClient]:
    """The real executor app on the FAKE Kubernetes API server, and a signed client for it."""
    with TestClient(
        executor_app(settings, backend=KubernetesBackend(fake.api_client())),
        base_url="http://executor",
    ) as http:
        yield ExecutorClient("http://executor", settings.secret("executor_hmac_secret"), http=http)
