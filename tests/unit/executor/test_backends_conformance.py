"""One contract, every backend: ``local`` (the JSON-file workload), ``kubernetes`` (against the
FAKE API server) and ``dry-run`` (wrapping ``local``: plans, never changes).

Each target starts with the same workload: demo/web with revisions 1 (nginx:1.26) and
2 (nginx:1.27, current) at 3 replicas, and demo/api with a single revision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aegis.executor.backends.dryrun import DryRunBackend
from aegis.executor.backends.kubernetes import KubernetesBackend
from aegis.executor.backends.local import LocalBackend, LocalCluster
from aegis.executor.backends.protocol import ExecutorBackend
from aegis.executor.errors import ActionFailed
from aegis.executor.schemas import ExecutorActionRequest, ExecutorLogsRequest
from tests.support.fake_kube import FakeKubeApiServer
from tests.unit.executor.conftest import action_request


@dataclass
class Target:
    backend: ExecutorBackend
    mutates: bool  # False for dry-run: it must never change anything
    snapshot: Callable[[], Any]
    replicas: Callable[[], int]
    images: Callable[[], dict[str, str]]
    restarted_at: Callable[[], str | None]
    pod_names: Callable[[], list[str]]


def _local_target(tmp_path: Path, *, dry: bool) -> Target:
    cluster = LocalCluster(tmp_path / "local-cluster.json")
    local = LocalBackend(cluster)
    backend: ExecutorBackend = (
        DryRunBackend(local, journal=tmp_path / "dry.jsonl") if dry else local
    )
    return Target(
        backend=backend,
        mutates=not dry,
        snapshot=cluster.snapshot,
        replicas=lambda: int(cluster.deployment("demo", "web")["replicas"]),
        images=lambda: dict(cluster.deployment("demo", "web")["images"]),
        restarted_at=lambda: cluster.deployment("demo", "web")["restarted_at"],
        pod_names=lambda: sorted(
            cluster.deployment("demo", "web")["pods"] + cluster.deployment("demo", "api")["pods"]
        ),
    )


def _kube_target(fake: FakeKubeApiServer, backend: KubernetesBackend) -> Target:
    def template() -> dict[str, Any]:
        return dict(fake.deployment("demo", "web")["spec"]["template"])

    return Target(
        backend=backend,
        mutates=True,
        snapshot=fake.snapshot,
        replicas=lambda: int(fake.deployment("demo", "web")["spec"]["replicas"]),
        images=lambda: {c["name"]: c["image"] for c in template()["spec"]["containers"]},
        restarted_at=lambda: (template()["metadata"].get("annotations") or {}).get(
            "kubectl.kubernetes.io/restartedAt"
        ),
        pod_names=lambda: fake.pod_names("demo"),
    )


@pytest.fixture(params=["local", "kubernetes", "dry-run"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "kubernetes":
        fake: FakeKubeApiServer = request.getfixturevalue("fake_kube")
        backend = KubernetesBackend(fake.api_client())
        yield _kube_target(fake, backend)
        backend.close()
        return
    yield _local_target(tmp_path, dry=request.param == "dry-run")


def test_scale_sets_the_replica_count(target: Target) -> None:
    outcome = target.backend.execute(action_request("scale_deployment", replicas=5))

    assert (outcome.before["replicas"], outcome.after["replicas"]) == (3, 5)
    assert target.replicas() == (5 if target.mutates else 3)
    assert outcome.dry_run is (not target.mutates)


def test_scale_to_zero_is_allowed(target: Target) -> None:
    outcome = target.backend.execute(action_request("scale_deployment", replicas=0))

    assert outcome.after["replicas"] == 0
    assert target.replicas() == (0 if target.mutates else 3)


def test_restart_stamps_restarted_at_in_the_pod_template(target: Target) -> None:
    outcome = target.backend.execute(action_request("restart_deployment"))

    assert outcome.before["restarted_at"] is None
    assert outcome.after["restarted_at"] is not None
    assert target.restarted_at() == (outcome.after["restarted_at"] if target.mutates else None)


def test_delete_pod_removes_exactly_that_pod(target: Target) -> None:
    victim = next(name for name in target.pod_names() if name.startswith("web-"))
    count = len(target.pod_names())

    outcome = target.backend.execute(action_request("delete_pod", name=victim))

    assert (outcome.before["deleted"], outcome.after["deleted"]) == (False, True)
    assert outcome.before["phase"] == "Running"
    if target.mutates:
        assert victim not in target.pod_names()
        assert len(target.pod_names()) == count  # replaced by its controller
    else:
        assert victim in target.pod_names()


def test_rollback_returns_to_the_previous_revision(target: Target) -> None:
    outcome = target.backend.execute(action_request("rollback_deployment"))

    assert outcome.before["images"] == {"web": "nginx:1.27"}
    assert outcome.after["images"] == {"web": "nginx:1.26"}
    assert outcome.after["rollback_to_revision"] == 1
    assert target.images() == ({"web": "nginx:1.26"} if target.mutates else {"web": "nginx:1.27"})


def test_rollback_to_a_named_revision_that_does_not_exist_fails(target: Target) -> None:
    with pytest.raises(ActionFailed, match="has no revision 7"):
        target.backend.execute(action_request("rollback_deployment", revision=7))


def test_rollback_to_the_current_revision_fails(target: Target) -> None:
    with pytest.raises(ActionFailed, match="already at revision 2"):
        target.backend.execute(action_request("rollback_deployment", revision=2))


def test_rollback_without_history_fails(target: Target) -> None:
    with pytest.raises(ActionFailed, match="has no previous revision"):
        target.backend.execute(action_request("rollback_deployment", name="api"))


@pytest.mark.parametrize(
    "action",
    [
        action_request("scale_deployment", dry_run=True, replicas=7),
        action_request("restart_deployment", dry_run=True),
        action_request("rollback_deployment", dry_run=True),
    ],
    ids=["scale", "restart", "rollback"],
)
def test_a_dry_run_changes_nothing_and_shows_the_change(
    target: Target, action: ExecutorActionRequest
) -> None:
    before = target.snapshot()

    outcome = target.backend.execute(action)

    assert outcome.dry_run is True
    assert outcome.before != outcome.after
    assert target.snapshot() == before


def test_a_dry_run_pod_delete_changes_nothing(target: Target) -> None:
    victim = target.pod_names()[0]
    before = target.snapshot()

    outcome = target.backend.execute(action_request("delete_pod", name=victim, dry_run=True))

    assert outcome.after["deleted"] is True
    assert target.snapshot() == before


@pytest.mark.parametrize(
    "action", ["scale_deployment", "restart_deployment", "rollback_deployment"]
)
def test_a_missing_deployment_fails_with_one_line(target: Target, action: str) -> None:
    request = (
        action_request(action, name="missing", replicas=1)
        if action == "scale_deployment"
        else action_request(action, name="missing")
    )
    with pytest.raises(ActionFailed, match="not found") as caught:
        target.backend.execute(request)
    assert "\n" not in caught.value.message


def test_a_missing_pod_fails(target: Target) -> None:
    with pytest.raises(ActionFailed, match="not found"):
        target.backend.execute(action_request("delete_pod", name="no-such-pod"))


def test_reading_a_deployments_logs_names_its_pods_and_changes_nothing(target: Target) -> None:
    before = target.snapshot()
    request = ExecutorLogsRequest(
        namespace="demo", deployment="web", requested_by="ai-engine", max_lines=10
    )

    found = target.backend.logs(request)

    web = [name for name in target.pod_names() if name.startswith("web-")]
    assert found.pods and set(found.pods) <= set(web)
    assert all(isinstance(text, str) for _, text in found.lines)
    assert len(found.lines) <= 10
    assert target.snapshot() == before
