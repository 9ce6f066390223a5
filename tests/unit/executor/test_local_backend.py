"""The local demo workload: persisted, shared between processes, and able to show recovery."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from aegis.executor.backends.local import HEALTHY, LocalBackend, LocalCluster
from aegis.executor.errors import ActionFailed
from tests.unit.executor.conftest import action_request


def test_state_is_kept_in_a_private_file_that_other_instances_see(tmp_path: Path) -> None:
    path = tmp_path / "executor" / "local-cluster.json"
    LocalBackend(LocalCluster(path)).execute(action_request("scale_deployment", replicas=4))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert LocalCluster(path).deployment("demo", "web")["replicas"] == 4


def test_a_restart_recovers_crashing_pods(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "state.json")
    cluster.crash_pods("demo", "api")
    assert cluster.deployment("demo", "api")["ready"] == 0

    LocalBackend(cluster).execute(action_request("restart_deployment", name="api"))

    assert cluster.deployment("demo", "api")["ready"] == 2


def test_a_rollback_recovers_from_a_bad_release(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "state.json")
    cluster.release("demo", "web", {"web": "nginx:broken"}, broken=True)
    LocalBackend(cluster).execute(action_request("restart_deployment"))  # a restart does not help
    assert cluster.deployment("demo", "web")["ready"] == 0

    outcome = LocalBackend(cluster).execute(action_request("rollback_deployment", revision=2))

    assert outcome.after["images"] == {"web": "nginx:1.27"}
    assert cluster.deployment("demo", "web")["ready"] == 3


def test_deleting_a_crashing_pod_replaces_it_with_a_healthy_one(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "state.json")
    cluster.crash_pods("demo", "worker")
    (victim,) = cluster.deployment("demo", "worker")["pods"]

    LocalBackend(cluster).execute(action_request("delete_pod", name=victim))

    state = cluster.snapshot()
    pods = [p for p in state["pods"].values() if p["deployment"] == "worker"]
    assert [p["phase"] for p in pods] == [HEALTHY]
    assert pods[0]["name"] != victim


def test_a_paused_deployment_is_not_restarted(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    cluster = LocalCluster(path)
    pods = cluster.deployment("demo", "api")["pods"]
    state = json.loads(path.read_text())
    state["deployments"]["demo/api"]["paused"] = True
    path.write_text(json.dumps(state))

    with pytest.raises(ActionFailed, match="demo/api is paused"):
        LocalBackend(cluster).execute(action_request("restart_deployment", name="api"))

    assert cluster.deployment("demo", "api")["pods"] == pods
