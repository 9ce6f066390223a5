"""The ``local`` backend: a small demo workload kept in a JSON file in the data directory.

It is a real backend, not a test double: ``aegis up`` uses it so the whole loop (alert ->
decision -> action -> recovery) can be watched on one machine without a cluster. Deployments have
replicas, a revision history of pod templates (images, a ``broken`` flag, ``restarted_at``) and
pods; a tiny "controller" keeps the pods in line with the deployment after every change, the
way the Kubernetes deployment and ReplicaSet controllers do:

* restart: stamps ``restarted_at`` in the template -> new revision -> every pod replaced;
* scale: pods added or removed;
* delete pod: the pod goes, a replacement is created;
* rollback: the previous revision's template becomes current under a new revision number
  (as ``kubectl rollout undo`` does), pods replaced.

Faults for demos: :meth:`LocalCluster.crash_pods` (transient: fixed by a restart or by deleting
the pod) and :meth:`LocalCluster.release` with ``broken=True`` (a bad release: fixed only by a
rollback). The file is written atomically (0600) under an exclusive lock, so several processes
may share it.
"""

from __future__ import annotations

import copy
import fcntl
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aegis.core.files import replace_atomically
from aegis.executor.backends.protocol import ActionOutcome, PodLogs, rollback_target
from aegis.executor.errors import ActionFailed
from aegis.executor.schemas import ExecutorActionRequest, ExecutorLogsRequest

State = dict[str, Any]
STATE_VERSION = 1
HEALTHY, CRASHING = "Running", "CrashLoopBackOff"


def default_state_path(data_dir: Path) -> Path:
    return data_dir / "executor" / "local-cluster.json"


def demo_workload() -> State:
    """The seed: three deployments in ``demo``; ``web`` has a revision to roll back to."""
    state: State = {"version": STATE_VERSION, "deployments": {}, "pods": {}}
    _add(state, "demo", "web", replicas=3, releases=[{"web": "nginx:1.26"}, {"web": "nginx:1.27"}])
    _add(state, "demo", "api", replicas=2, releases=[{"api": "ghcr.io/aegis-demo/api:1.4.0"}])
    _add(
        state,
        "demo",
        "worker",
        replicas=1,
        releases=[{"worker": "ghcr.io/aegis-demo/worker:1.4.0"}],
    )
    return state


def _add(
    state: State, namespace: str, name: str, *, replicas: int, releases: list[dict[str, str]]
) -> None:
    history = {
        str(number): {"images": images, "broken": False, "restarted_at": None}
        for number, images in enumerate(releases, start=1)
    }
    state["deployments"][f"{namespace}/{name}"] = {
        "namespace": namespace,
        "name": name,
        "replicas": replicas,
        "revision": len(releases),
        "paused": False,
        "template": copy.deepcopy(history[str(len(releases))]),
        "history": history,
    }
    _reconcile(state, namespace, name)


def _reconcile(state: State, namespace: str, name: str) -> None:
    """The controller: exactly ``replicas`` pods of the current revision."""
    deployment = state["deployments"][f"{namespace}/{name}"]
    revision = deployment["revision"]
    mine = {
        key: pod
        for key, pod in state["pods"].items()
        if pod["namespace"] == namespace and pod["deployment"] == name
    }
    for key, pod in mine.items():
        if pod["revision"] != revision:
            del state["pods"][key]
    current = sorted(key for key, pod in mine.items() if pod["revision"] == revision)
    for key in current[deployment["replicas"] :]:
        del state["pods"][key]
    for _ in range(deployment["replicas"] - len(current[: deployment["replicas"]])):
        pod_name = f"{name}-r{revision}-{secrets.token_hex(3)}"
        state["pods"][f"{namespace}/{pod_name}"] = {
            "namespace": namespace,
            "name": pod_name,
            "deployment": name,
            "revision": revision,
            "uid": str(uuid.uuid4()),
            "phase": CRASHING if deployment["template"]["broken"] else HEALTHY,
        }


def _deployment_state(deployment: State) -> dict[str, Any]:
    return {
        "replicas": deployment["replicas"],
        "revision": deployment["revision"],
        "restarted_at": deployment["template"]["restarted_at"],
        "images": dict(deployment["template"]["images"]),
    }


def _new_revision(deployment: State, template: State) -> None:
    number = max(int(key) for key in deployment["history"]) + 1
    deployment["history"][str(number)] = copy.deepcopy(template)
    deployment["template"] = copy.deepcopy(template)
    deployment["revision"] = number


class LocalCluster:
    """The JSON-file workload, with the operations the backend and demos need."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _locked(self, *, write: bool) -> Iterator[State]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with lock_path.open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                state = self._load()
                yield state
                if write:
                    self._store(state)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _load(self) -> State:
        if not self.path.exists():
            state = demo_workload()
            self._store(state)
            return state
        loaded: State = json.loads(self.path.read_text())
        if loaded.get("version") != STATE_VERSION:
            raise ActionFailed(f"local workload file {self.path} has an unknown version")
        return loaded

    def _store(self, state: State) -> None:
        replace_atomically(self.path, json.dumps(state, indent=1, sort_keys=True).encode())

    # --- reading -------------------------------------------------------------------------
    def snapshot(self) -> State:
        with self._locked(write=False) as state:
            return copy.deepcopy(state)

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        """The deployment's state plus ``ready`` (pods Running) and its pod names."""
        state = self.snapshot()
        deployment = _get_deployment(state, namespace, name)
        pods = [
            p
            for p in state["pods"].values()
            if p["namespace"] == namespace and p["deployment"] == name
        ]
        return {
            **_deployment_state(deployment),
            "ready": sum(1 for p in pods if p["phase"] == HEALTHY),
            "pods": sorted(p["name"] for p in pods),
        }

    # --- demo faults ---------------------------------------------------------------------
    def crash_pods(self, namespace: str, name: str) -> None:
        """Every current pod of the deployment goes into CrashLoopBackOff (a transient fault)."""
        with self._locked(write=True) as state:
            _get_deployment(state, namespace, name)
            for pod in state["pods"].values():
                if pod["namespace"] == namespace and pod["deployment"] == name:
                    pod["phase"] = CRASHING

    def release(
        self, namespace: str, name: str, images: dict[str, str], *, broken: bool = False
    ) -> int:
        """Roll out new images as a new revision (``broken`` pods crash); the new revision."""
        with self._locked(write=True) as state:
            deployment = _get_deployment(state, namespace, name)
            template = {**deployment["template"], "images": dict(images), "broken": broken}
            _new_revision(deployment, template)
            _reconcile(state, namespace, name)
            return int(deployment["revision"])

    # --- actions -------------------------------------------------------------------------
    def apply(self, request: ExecutorActionRequest, *, now: datetime) -> tuple[State, State]:
        """Run (or, for a dry run, plan) ``request``; (before, after) states."""
        with self._locked(write=not request.dry_run) as state:
            return _ACTIONS[request.action](state, request, now)


def _get_deployment(state: State, namespace: str, name: str) -> State:
    deployment = state["deployments"].get(f"{namespace}/{name}")
    if deployment is None:
        raise ActionFailed(f"deployment {namespace}/{name} not found")
    return deployment  # type: ignore[no-any-return]


def _restart(state: State, request: ExecutorActionRequest, now: datetime) -> tuple[State, State]:
    deployment = _get_deployment(state, request.namespace, request.name)
    before = _deployment_state(deployment)
    if deployment["paused"]:
        raise ActionFailed(
            f"deployment {request.namespace}/{request.name} is paused; resume it before restarting",
            before=before,
        )
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _new_revision(deployment, {**deployment["template"], "restarted_at": stamp})
    _reconcile(state, request.namespace, request.name)
    return before, _deployment_state(deployment)


def _scale(state: State, request: ExecutorActionRequest, _: datetime) -> tuple[State, State]:
    deployment = _get_deployment(state, request.namespace, request.name)
    before = _deployment_state(deployment)
    deployment["replicas"] = request.replicas
    _reconcile(state, request.namespace, request.name)
    return before, _deployment_state(deployment)


def _delete_pod(state: State, request: ExecutorActionRequest, _: datetime) -> tuple[State, State]:
    pod = state["pods"].get(f"{request.namespace}/{request.name}")
    if pod is None:
        raise ActionFailed(f"pod {request.namespace}/{request.name} not found")
    before = {
        "phase": pod["phase"],
        "uid": pod["uid"],
        "owner": f"Deployment/{pod['deployment']}",
        "deleted": False,
    }
    del state["pods"][f"{request.namespace}/{request.name}"]
    _reconcile(state, request.namespace, pod["deployment"])  # the replacement
    return before, {**before, "deleted": True}


def _rollback(state: State, request: ExecutorActionRequest, _: datetime) -> tuple[State, State]:
    deployment = _get_deployment(state, request.namespace, request.name)
    before = _deployment_state(deployment)
    if deployment["paused"]:
        raise ActionFailed(
            f"deployment {request.namespace}/{request.name} is paused", before=before
        )
    current = deployment["revision"]
    target = rollback_target(
        [int(key) for key in deployment["history"]],
        current,
        request.revision,
        f"{request.namespace}/{request.name}",
        before,
    )
    template = deployment["history"].pop(str(target))
    _new_revision(deployment, template)
    _reconcile(state, request.namespace, request.name)
    return before, {**_deployment_state(deployment), "rollback_to_revision": target}


_ACTIONS: dict[str, Callable[[State, ExecutorActionRequest, datetime], tuple[State, State]]] = {
    "restart_deployment": _restart,
    "scale_deployment": _scale,
    "delete_pod": _delete_pod,
    "rollback_deployment": _rollback,
}


class LocalBackend:
    """``EXECUTOR_BACKEND=local``: acts on a :class:`LocalCluster`."""

    name = "local"

    def __init__(
        self, cluster: LocalCluster, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.cluster = cluster
        self._clock = clock

    def execute(self, request: ExecutorActionRequest) -> ActionOutcome:
        before, after = self.cluster.apply(request, now=self._clock())
        return ActionOutcome(before=before, after=after, dry_run=request.dry_run)

    def logs(self, request: ExecutorLogsRequest) -> PodLogs:
        """The pods asked about; the demo workload's pods write no log lines."""
        state = self.cluster.snapshot()
        pods = sorted(
            p["name"]
            for p in state["pods"].values()
            if p["namespace"] == request.namespace
            and (p["name"] == request.pod or p["deployment"] == request.deployment)
        )
        return PodLogs(pods=pods, lines=[])

    def close(self) -> None:
        """Nothing is held between actions."""
