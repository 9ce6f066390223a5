"""A FAKE Kubernetes API server for tests. It is not Kubernetes and must never be used as one.

No real API server can run here, so the executor's ``kubernetes`` backend is tested against this
wire-level fake: a stdlib HTTP server on a free loopback port that serves the real API paths and
JSON shapes the official ``kubernetes`` client speaks, for just what the executor uses:

* ``apps/v1`` Deployments: GET, PATCH (strategic-merge and merge patch as a recursive merge in
  which lists are replaced whole; JSON patch ``add``/``replace``/``remove``/``test``);
* ``deployments/{name}/scale``: GET, PATCH;
* ``apps/v1`` ReplicaSets: list, with ``ownerReferences`` and ``deployment.kubernetes.io/revision``
  annotations, filtered by an equality ``labelSelector``;
* ``core/v1`` Pods: list (by name, filtered by an equality ``labelSelector``, paged by ``limit``
  and ``continue``, this fake's token being the last name sent), GET, DELETE (honouring a UID
  precondition);
* ``pods/{name}/log``: GET as text (a 400 for a ``Pending`` pod, whose container is still
  waiting to start), with ``container`` (required, as on a real server, when the
  pod has more than one), ``timestamps``, ``sinceSeconds``, ``tailLines`` and ``limitBytes``
  (lines a test put there with :meth:`FakeKubeApiServer.add_log_lines`).

``dryRun=All`` is honoured (the answer shows the change, nothing is stored); any other dryRun
value is a 400 as on a real server. Every response carries an ``Audit-Id`` header, and every
request is recorded (:attr:`FakeKubeApiServer.requests`) so tests can assert what was sent.

What a misbehaving API server (or a proxy in front of it) does, when a test switches it on: every
JSON answer padded with ``answer_padding`` bytes (a huge answer, its length declared); every
answer a 200 whose JSON never ends (``endless_answers``, a piece every ``trickle_s`` seconds, no
length declared); the answers to ``stalled_methods`` withheld, after the request was acted on
and recorded, until the fake stops (an answer lost on the way back) or, sent as usual then, until
:meth:`FakeKubeApiServer.release_stalled` (a slow API server: ``stalled`` is set while one waits);
every request refused with ``busy`` = (429 or 503, seconds), not acted on, its answer saying
``Retry-After: <seconds>`` (an overloaded API server, or its priority and fairness shedding load);
the answer to one request replaced (``replaced_answers[(method, path)] = (status, body)``, a body
of bytes sent as text, any other (None too) as JSON), after it was acted on and recorded as usual:
a proxy's page, an empty or partial object (``{}``), a status of the test's choosing.

After a persisted change a tiny "controller" does synchronously what the deployment and ReplicaSet
controllers do asynchronously: a changed pod template gets a ReplicaSet (a new one, or the old one
whose template matches, re-numbered) and the next revision number; pods follow the replica count;
a deleted pod is replaced; a paused deployment (``spec.paused``) is scaled but not rolled out. As
on a real server, the PATCH answer is the object as written, before the controller runs (so its
revision annotation is still the old one).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
CHANGE_CAUSE = "kubernetes.io/change-cause"
# What the deployment controller does not copy from a deployment to its ReplicaSets.
NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
}
Obj = dict[str, Any]


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any
    status: int
    audit_id: str


class _ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def _not_found(kind: str, name: str) -> _ApiError:
    return _ApiError(404, "NotFound", f'{kind} "{name}" not found')


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch (strategic merge treated the same; lists replaced whole)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _json_patch(target: Obj, ops: list[Obj]) -> Obj:
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent: Any = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if op["op"] == "replace" and isinstance(parent, dict) and last not in parent:
                raise _ApiError(422, "Invalid", f"replace of missing path {op['path']}")
            parent[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[last]
        elif op["op"] == "test":
            if parent.get(last) != op["value"]:
                raise _ApiError(422, "Invalid", f"test failed at {op['path']}")
        else:
            raise _ApiError(422, "Invalid", f"unsupported JSON patch op {op['op']}")
    return doc


def _template_key(template: Obj) -> str:
    stripped = copy.deepcopy(template)
    stripped.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    return json.dumps(stripped, sort_keys=True)


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


class FakeKubeApiServer:
    """A FAKE API server (see the module doc). Use as a context manager."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.deployments: dict[tuple[str, str], Obj] = {}
        self.replicasets: dict[tuple[str, str], Obj] = {}
        self.pods: dict[tuple[str, str], Obj] = {}
        self.logs: dict[tuple[str, str, str | None], list[tuple[float, bytes]]] = {}
        self.requests: list[RecordedRequest] = []
        # A validating admission webhook (Gatekeeper, Kyverno) that denies every write with this
        # message, as a real one words it: several violations, one a line.
        self.admission_denial: str | None = None
        self.error_body: bytes | None = None  # sent as the body of every error answer
        # Misbehaviour (see the module doc).
        self.answer_padding = 0
        self.endless_answers = False
        self.trickle_s = 0.0
        self.stalled_methods: set[str] = set()
        self.stalled = threading.Event()  # set once a stalled request is waiting for its answer
        self.busy: tuple[int, int] | None = None
        self.replaced_answers: dict[tuple[str, str], tuple[int, Any]] = {}
        self._stopping = threading.Event()
        self._unstalled = threading.Event()  # set by stop() and release_stalled()
        self._version = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeKubeApiServer:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # stalled and endless answers end
        self._unstalled.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def release_stalled(self) -> None:
        """Send the withheld answers (and any later one) as usual: stalling stops."""
        self.stalled_methods = set()
        self._unstalled.set()

    def __enter__(self) -> FakeKubeApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def api_client(self) -> Any:
        """A real ``kubernetes.client.ApiClient`` pointed at this fake."""
        from kubernetes import client

        return client.ApiClient(client.Configuration(host=self.url))

    # --- arranging ---------------------------------------------------------------------------
    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int = 3,
        revisions: list[dict[str, str]] | None = None,
        labels: dict[str, str] | None = None,
        causes: list[str] | None = None,
        pod_annotations: dict[str, str] | None = None,
    ) -> None:
        """A deployment rolled out once per entry of ``revisions`` ({container: image}), each
        with the ``kubernetes.io/change-cause`` in ``causes`` when given; ``pod_annotations``
        go into its pod template."""
        labels = labels or {"app": name}
        revisions = revisions or [{name: f"registry.example/{name}:1"}]
        with self._lock:
            self.deployments[(namespace, name)] = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": str(uuid.uuid4()),
                    "generation": 1,
                    "annotations": {},
                    "labels": dict(labels),
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": dict(labels)},
                    "template": {},
                },
                "status": {},
            }
            for at, images in enumerate(revisions):
                deployment = self.deployments[(namespace, name)]
                if causes is not None:
                    deployment["metadata"]["annotations"][CHANGE_CAUSE] = causes[at]
                metadata: Obj = {"labels": dict(labels)}
                if pod_annotations:
                    metadata["annotations"] = dict(pod_annotations)
                deployment["spec"]["template"] = {
                    "metadata": metadata,
                    "spec": {"containers": [{"name": c, "image": i} for c, i in images.items()]},
                }
                self._reconcile(namespace, name)

    def add_pod(self, namespace: str, name: str, *, phase: str = "Running") -> None:
        """A bare pod, owned by nothing."""
        with self._lock:
            self.pods[(namespace, name)] = self._pod(namespace, name, {}, None, phase)

    # --- inspecting --------------------------------------------------------------------------
    def add_log_lines(
        self,
        namespace: str,
        pod: str,
        lines: list[tuple[float, bytes]],
        *,
        container: str | None = None,
    ) -> None:
        """Lines a container of the pod ``pod`` wrote (default: its first container): (epoch
        seconds, raw bytes without the newline)."""
        with self._lock:
            if container is None and (namespace, pod) in self.pods:
                container = self.pods[(namespace, pod)]["spec"]["containers"][0]["name"]
            self.logs.setdefault((namespace, pod, container), []).extend(lines)

    def snapshot(self) -> Obj:
        with self._lock:
            return copy.deepcopy(
                {
                    "deployments": self.deployments,
                    "replicasets": self.replicasets,
                    "pods": self.pods,
                }
            )

    def deployment(self, namespace: str, name: str) -> Obj:
        with self._lock:
            return copy.deepcopy(self.deployments[(namespace, name)])

    def pod_names(self, namespace: str) -> list[str]:
        with self._lock:
            return sorted(name for ns, name in self.pods if ns == namespace)

    def mutating_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method in {"PATCH", "DELETE", "POST", "PUT"}]

    # --- the "controllers" -------------------------------------------------------------------
    def _owned(
        self, namespace: str, owner_uid: str, store: dict[tuple[str, str], Obj]
    ) -> list[Obj]:
        return [
            obj
            for (ns, _), obj in store.items()
            if ns == namespace
            and any(ref["uid"] == owner_uid for ref in obj["metadata"].get("ownerReferences", []))
        ]

    def _reconcile(self, namespace: str, name: str) -> None:
        deployment = self.deployments[(namespace, name)]
        uid = deployment["metadata"]["uid"]
        template = deployment["spec"]["template"]
        owned = self._owned(namespace, uid, self.replicasets)
        top = max((int(rs["metadata"]["annotations"][REVISION]) for rs in owned), default=0)
        current = next(
            (
                rs
                for rs in owned
                if _template_key(rs["spec"]["template"]) == _template_key(template)
            ),
            None,
        )
        if current is None and deployment["spec"].get("paused") and owned:
            # A paused deployment is not rolled out: a changed pod template waits for a resume
            # (the controller only scales; it creates no ReplicaSet and bumps no revision).
            newest = max(owned, key=lambda rs: int(rs["metadata"]["annotations"][REVISION]))
            newest["spec"]["replicas"] = deployment["spec"]["replicas"]
            self._reconcile_pods(namespace, newest)
            return
        if current is None:
            current = self._new_replica_set(namespace, deployment, top + 1)
        elif int(current["metadata"]["annotations"][REVISION]) != top:
            current["metadata"]["annotations"][REVISION] = str(top + 1)
        # like the controller, the current ReplicaSet takes the deployment's annotations
        for key, value in deployment["metadata"]["annotations"].items():
            if key not in NOT_COPIED:
                current["metadata"]["annotations"][key] = value
        deployment["metadata"]["annotations"][REVISION] = current["metadata"]["annotations"][
            REVISION
        ]
        for rs in self._owned(namespace, uid, self.replicasets):
            rs["spec"]["replicas"] = deployment["spec"]["replicas"] if rs is current else 0
            self._reconcile_pods(namespace, rs)

    def _new_replica_set(self, namespace: str, deployment: Obj, revision: int) -> Obj:
        template = copy.deepcopy(deployment["spec"]["template"])
        digest = hashlib.sha256(_template_key(template).encode()).hexdigest()[:10]
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
        name = f"{deployment['metadata']['name']}-{digest}"
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {REVISION: str(revision)},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": deployment["metadata"]["name"],
                        "uid": deployment["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": dict(template["metadata"]["labels"])},
                "template": template,
            },
        }
        self.replicasets[(namespace, name)] = rs
        return rs

    def _reconcile_pods(self, namespace: str, rs: Obj) -> None:
        pods = sorted(
            self._owned(namespace, rs["metadata"]["uid"], self.pods),
            key=lambda p: p["metadata"]["name"],
        )
        wanted = rs["spec"]["replicas"]
        for pod in pods[wanted:]:
            del self.pods[(namespace, pod["metadata"]["name"])]
        for _ in range(wanted - len(pods[:wanted])):
            name = f"{rs['metadata']['name']}-{secrets.token_hex(3)[:5]}"
            self.pods[(namespace, name)] = self._pod(
                namespace, name, rs["spec"]["template"], rs, "Running"
            )

    def _pod(self, namespace: str, name: str, template: Obj, owner: Obj | None, phase: str) -> Obj:
        containers = template.get("spec", {}).get("containers") or [
            {"name": "main", "image": "registry.example/bare:1"}
        ]
        metadata: Obj = {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "labels": dict(template.get("metadata", {}).get("labels", {})),
        }
        if template.get("metadata", {}).get("annotations"):
            metadata["annotations"] = dict(template["metadata"]["annotations"])
        if owner is not None:
            metadata["ownerReferences"] = [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"containers": copy.deepcopy(containers)},
            "status": {"phase": phase},
        }

    # --- the API -----------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: dict[str, str], content_type: str | None, body: Any
    ) -> tuple[int, Obj | bytes]:
        dry = "dryRun" in query
        if dry and query["dryRun"] != "All":
            raise _ApiError(400, "BadRequest", f"invalid dry run value {query['dryRun']!r}")
        if method != "GET" and self.admission_denial is not None:
            raise _ApiError(
                403,
                "Forbidden",
                'admission webhook "validation.gatekeeper.sh" denied the request: '
                + self.admission_denial,
            )
        with self._lock:
            for pattern, handler in _ROUTES:
                match = re.fullmatch(pattern, path)
                if match:
                    return handler(self, method, match.groups(), query, content_type, body, dry)
        raise _ApiError(404, "NotFound", f"the server could not find the requested resource {path}")

    def _bump(self, obj: Obj) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)

    def _patched(self, current: Obj, content_type: str | None, body: Any) -> Obj:
        kind = (content_type or "").split(";")[0].strip()
        if kind == "application/json-patch+json":
            if not isinstance(body, list):
                raise _ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
            return _json_patch(current, body)
        if kind in ("application/strategic-merge-patch+json", "application/merge-patch+json"):
            if not isinstance(body, dict):
                raise _ApiError(400, "BadRequest", "a merge patch must be an object")
            merged: Obj = _merge(current, body)
            return merged
        raise _ApiError(415, "UnsupportedMediaType", f"unsupported patch type {kind!r}")

    def _deployment_route(
        self,
        method: str,
        groups: tuple[str, ...],
        _q: dict[str, str],
        content_type: str | None,
        body: Any,
        dry: bool,
    ) -> tuple[int, Obj]:
        namespace, name = groups
        current = self.deployments.get((namespace, name))
        if current is None:
            raise _not_found("deployments.apps", name)
        if method == "GET":
            return 200, copy.deepcopy(current)
        if method != "PATCH":
            raise _ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
        patched = self._patched(current, content_type, body)
        patched["metadata"]["uid"] = current["metadata"]["uid"]
        if patched["spec"]["template"] != current["spec"]["template"]:
            patched["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        answer = copy.deepcopy(patched)
        if not dry:
            self._bump(patched)
            answer = copy.deepcopy(patched)
            self.deployments[(namespace, name)] = patched
            self._reconcile(namespace, name)
        return 200, answer

    def _scale_route(
        self,
        method: str,
        groups: tuple[str, ...],
        _q: dict[str, str],
        content_type: str | None,
        body: Any,
        dry: bool,
    ) -> tuple[int, Obj]:
        namespace, name = groups
        deployment = self.deployments.get((namespace, name))
        if deployment is None:
            raise _not_found("deployments.apps", name)
        selector = ",".join(
            f"{k}={v}" for k, v in sorted(deployment["spec"]["selector"]["matchLabels"].items())
        )
        running = len(
            [
                p
                for p in self.pods.values()
                if p["metadata"]["namespace"] == namespace
                and _matches(p["metadata"].get("labels", {}), selector)
            ]
        )
        scale = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": deployment["metadata"]["uid"],
            },
            "spec": {"replicas": deployment["spec"]["replicas"]},
            "status": {"replicas": running, "selector": selector},
        }
        if method == "GET":
            return 200, scale
        if method != "PATCH":
            raise _ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
        patched = self._patched(scale, content_type, body)
        replicas = patched.get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise _ApiError(422, "Invalid", "spec.replicas: must be a non-negative integer")
        if not dry:
            deployment["spec"]["replicas"] = replicas
            self._bump(deployment)
            self._reconcile(namespace, name)
        return 200, patched

    def _replicasets_route(
        self,
        method: str,
        groups: tuple[str, ...],
        query: dict[str, str],
        _ct: str | None,
        _b: Any,
        _dry: bool,
    ) -> tuple[int, Obj]:
        (namespace,) = groups
        if method != "GET":
            raise _ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
        items = [
            copy.deepcopy(rs)
            for (ns, _), rs in sorted(self.replicasets.items())
            if ns == namespace
            and _matches(rs["metadata"].get("labels", {}), query.get("labelSelector"))
        ]
        return 200, {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSetList",
            "metadata": {},
            "items": items,
        }

    def _pods_route(
        self,
        method: str,
        groups: tuple[str, ...],
        query: dict[str, str],
        _ct: str | None,
        _b: Any,
        _dry: bool,
    ) -> tuple[int, Obj]:
        (namespace,) = groups
        if method != "GET":
            raise _ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
        after = query.get("continue", "")  # this fake's token: the last name already sent
        items = [
            p
            for (ns, name), p in sorted(self.pods.items())
            if ns == namespace
            and name > after
            and _matches(p["metadata"].get("labels", {}), query.get("labelSelector"))
        ]
        metadata: Obj = {}
        limit = int(query.get("limit", "0"))
        if 0 < limit < len(items):  # a page in name (key) order, as a real server gives it
            metadata = {
                "continue": items[limit - 1]["metadata"]["name"],
                "remainingItemCount": len(items) - limit,
            }
            items = items[:limit]
        return 200, {
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": metadata,
            "items": [copy.deepcopy(p) for p in items],
        }

    def _pod_route(
        self,
        method: str,
        groups: tuple[str, ...],
        _q: dict[str, str],
        _ct: str | None,
        body: Any,
        dry: bool,
    ) -> tuple[int, Obj]:
        namespace, name = groups
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise _not_found("pods", name)
        if method == "GET":
            return 200, copy.deepcopy(pod)
        if method != "DELETE":
            raise _ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
        wanted_uid = ((body or {}).get("preconditions") or {}).get("uid")
        if wanted_uid and wanted_uid != pod["metadata"]["uid"]:
            raise _ApiError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: "
                f"{wanted_uid}, UID in object meta: "
                f"{pod['metadata']['uid']}",
            )
        answer = copy.deepcopy(pod)
        answer["metadata"]["deletionTimestamp"] = "2026-11-23T00:00:00Z"
        answer["metadata"]["deletionGracePeriodSeconds"] = 30
        if not dry:
            del self.pods[(namespace, name)]
            owner = next(iter(pod["metadata"].get("ownerReferences", [])), None)
            if owner is not None:  # the ReplicaSet controller replaces it
                rs = next(
                    (r for r in self.replicasets.values() if r["metadata"]["uid"] == owner["uid"]),
                    None,
                )
                if rs is not None:
                    self._reconcile_pods(namespace, rs)
        return 200, answer

    def _pod_log_route(
        self,
        method: str,
        groups: tuple[str, ...],
        query: dict[str, str],
        _ct: str | None,
        _b: Any,
        _dry: bool,
    ) -> tuple[int, Obj | bytes]:
        namespace, name = groups
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise _not_found("pods", name)
        if method != "GET":
            raise _ApiError(405, "MethodNotAllowed", f"{method} is not supported here")
        # The API server's ValidateContainer: no container named is only fine for a pod with
        # one container (the default-container annotation is kubectl's, not the server's).
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = query.get("container")
        if container is None:
            if len(names) != 1:
                raise _ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, "
                    f"choose one of: [{' '.join(names)}]",
                )
            container = names[0]
        elif container not in names:
            raise _ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if pod["status"].get("phase") == "Pending":  # no container has started: nothing to read
            raise _ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating',
            )
        entries = self.logs.get((namespace, name, container), [])
        if "sinceSeconds" in query:
            cutoff = time.time() - int(query["sinceSeconds"])
            entries = [e for e in entries if e[0] >= cutoff]
        if "tailLines" in query:
            entries = entries[-int(query["tailLines"]) :] if int(query["tailLines"]) else []
        stamped = query.get("timestamps") == "true"
        text = b"".join(
            (_rfc3339_nano(at).encode() + b" " if stamped else b"") + line + b"\n"
            for at, line in entries
        )
        if "limitBytes" in query:
            text = text[: int(query["limitBytes"])]
        return 200, text


def _rfc3339_nano(at: float) -> str:
    """The API server's ``timestamps=true`` stamp: nanoseconds, UTC, ``Z``."""
    whole = int(at)
    nanos = round((at - whole) * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{nanos:09d}Z"


_Route = Callable[
    [FakeKubeApiServer, str, tuple[str, ...], dict[str, str], str | None, Any, bool],
    tuple[int, Any],
]
_ROUTES: list[tuple[str, _Route]] = [
    (r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)", FakeKubeApiServer._deployment_route),
    (r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)/scale", FakeKubeApiServer._scale_route),
    (r"/apis/apps/v1/namespaces/([^/]+)/replicasets", FakeKubeApiServer._replicasets_route),
    (r"/api/v1/namespaces/([^/]+)/pods", FakeKubeApiServer._pods_route),
    (r"/api/v1/namespaces/([^/]+)/pods/([^/]+)", FakeKubeApiServer._pod_route),
    (r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", FakeKubeApiServer._pod_log_route),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeKubeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake records requests in ``requests`` instead."""

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type")
        audit_id = str(uuid.uuid4())
        body: Any = None
        fake = self.server_fake
        try:
            body = json.loads(raw) if raw else None
            if fake.busy is not None:
                reason = "TooManyRequests" if fake.busy[0] == 429 else "ServiceUnavailable"
                raise _ApiError(fake.busy[0], reason, "the server is busy; try again later")
            status, payload = fake.handle(self.command, parts.path, query, content_type, body)
        except _ApiError as exc:
            status, payload = exc.code, exc.status()
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            status, payload = 400, _ApiError(400, "BadRequest", f"bad request: {exc}").status()
        replaced = fake.replaced_answers.get((self.command, parts.path))
        if replaced is not None:  # acted on as usual (or refused); this is what comes back
            status, payload = replaced
        fake.requests.append(
            RecordedRequest(self.command, parts.path, query, content_type, body, status, audit_id)
        )
        if self.command in fake.stalled_methods:
            fake.stalled.set()
            fake._unstalled.wait()  # the request was acted on; its answer is withheld
            if fake._stopping.is_set():  # and never comes
                self.close_connection = True
                return
        if fake.endless_answers:
            self._endless(audit_id)
            return
        if fake.answer_padding and isinstance(payload, dict):
            payload = {**payload, "padding": "x" * fake.answer_padding}
        text = isinstance(payload, bytes)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if status >= 400 and fake.error_body is not None and replaced is None:
            text, data = False, fake.error_body
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", audit_id)
        if fake.busy is not None:
            self.send_header("Retry-After", str(fake.busy[1]))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:  # the client hung up mid-answer (one it would not read whole)
            self.close_connection = True

    def _endless(self, audit_id: str) -> None:
        """A 200 whose JSON body never ends, until the client hangs up or the fake stops."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Audit-Id", audit_id)
        self.end_headers()
        self.close_connection = True
        piece = b"x" * (1 if self.server_fake.trickle_s else 64 * 1024)
        try:
            self.wfile.write(b'{"padding": "')
            while not self.server_fake._stopping.wait(self.server_fake.trickle_s):
                self.wfile.write(piece)
                self.wfile.flush()
        except OSError:  # the client hung up
            pass

    do_GET = do_PATCH = do_DELETE = do_PUT = do_POST = _serve  # noqa: N815 - http.server names
