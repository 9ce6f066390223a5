"""The ``kubernetes`` backend: the four actions through the official client, as kubectl does them.

* restart: strategic-merge patch of the pod-template annotation
  ``kubectl.kubernetes.io/restartedAt`` (``kubectl rollout restart``; a paused deployment is
  refused, as kubectl refuses it);
* scale: the ``deployments/scale`` subresource (``read/patch_namespaced_deployment_scale``);
* delete pod: ``DELETE`` with a UID precondition, so only the pod that was read is deleted;
* rollback: list the ReplicaSets the deployment controls, take the previous
  ``deployment.kubernetes.io/revision`` (or the one asked for) and JSON-patch its pod template
  and its annotations (``kubernetes.io/change-cause`` ...) into the deployment, keeping the
  deployment's own bookkeeping annotations (``kubectl rollout undo``).

A dry run sends the same writes with ``dryRun=All``: the API server validates and answers with
the object as it would be, and persists nothing. Every response's ``Audit-Id`` header is kept,
in call order, so the action can be found in the API server's audit log.

Logs (read only): the pod, or up to :data:`MAX_LOG_PODS` pods of the deployment's selector (the
first by name, and only those listed: ``limit``), each read with ``timestamps=true``,
``sinceSeconds`` and ``tailLines`` (``kubectl logs --timestamps --since --tail``) from the
container kubectl would pick (:func:`default_container`), at most :data:`MAX_LOG_BYTES` per pod;
bytes that are not UTF-8 are replaced, never fatal. A pod the API server will not read (a
container still waiting to start) is left out; only when no pod can be read is the request
refused.

Every answer is read at most :data:`MAX_ANSWER_BYTES` (32 MiB), within the read timeout
(:mod:`aegis.executor.backends.kube_transport`); a longer or slower one fails the action, or
refuses the log read, with one line naming the bound. A write (PATCH, DELETE) that may have
reached the API server is never sent again; when its answer does not come the action fails
saying its outcome is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client

from aegis.executor.backends import kube_answers
from aegis.executor.backends.kube_answers import deployment_state
from aegis.executor.backends.kube_transport import (
    MAX_ANSWER_BYTES,
    KubeAnswerRefused,
    KubeAnswerUnreadable,
    api_error,
    guarded,
    no_answer,
)
from aegis.executor.backends.protocol import (
    RESTARTED_AT_ANNOTATION,
    REVISION_ANNOTATION,
    ActionOutcome,
    PodLogs,
    parse_revision,
    rollback_target,
)
from aegis.executor.errors import ActionFailed, LogsUnavailable
from aegis.executor.schemas import ExecutorActionRequest, ExecutorLogsRequest

FIELD_MANAGER = "aegis-executor"
MAX_LOG_PODS = 3
MAX_LOG_BYTES = 1 << 20
AUDIT_ID_HEADER = "Audit-Id"
POD_TEMPLATE_HASH = "pod-template-hash"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
# The annotations a rollback leaves as the deployment has them instead of taking the
# ReplicaSet's (kubectl's polymorphichelpers/rollback.go, annotationsToSkip).
DEPLOYMENT_OWN_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


def _write(fn: Callable[..., Any]) -> bool:
    return fn.__name__.startswith(("patch_", "delete_"))


class _Run:
    """One action's calls: collects audit ids and turns API errors into ActionFailed."""

    def __init__(self, backend: KubernetesBackend, request: ExecutorActionRequest) -> None:
        self.backend = backend
        self.request = request
        self.audit_ids: list[str] = []
        self.before: dict[str, Any] = {}
        self.dry_run = "All" if request.dry_run else None

    def call(
        self,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        shows: kube_answers.Shows,
        **kwargs: Any,
    ) -> Any:
        """``fn``'s answer, which must show what ``shows`` says (:mod:`.kube_answers`)."""
        try:
            data, status, headers = fn(*args, _request_timeout=self.backend.timeout, **kwargs)
            if (lacking := shows.lacking(data)) is not None:
                raise KubeAnswerUnreadable(status, shows.kind, headers, lacking)
        except client.ApiException as exc:
            self._collect(exc.headers)
            raise ActionFailed(f"{what}: {api_error(exc)}") from None
        except KubeAnswerUnreadable as exc:
            self._collect(exc.headers)
            # a successful answer to a write: it most likely acted, but nothing says what
            acted = "; it may or may not have acted: check the target" if _write(fn) else ""
            raise ActionFailed(f"{what}: {exc.message}{acted}") from None
        except KubeAnswerRefused as exc:
            self._collect(exc.headers)
            raise ActionFailed(f"{what}: {exc.message}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise ActionFailed(f"{what}: {no_answer(exc, write=_write(fn))}") from None
        self._collect(headers)
        return data

    def _collect(self, headers: Mapping[str, str] | None) -> None:
        audit_id = headers.get(AUDIT_ID_HEADER) if headers is not None else None
        if audit_id:
            self.audit_ids.append(str(audit_id))

    def read_deployment(self) -> Any:
        r = self.request
        deployment = self.call(
            f"read deployment {r.namespace}/{r.name}",
            self.backend.apps.read_namespaced_deployment_with_http_info,
            r.name,
            r.namespace,
            shows=kube_answers.DEPLOYMENT,
        )
        self.before = deployment_state(deployment)
        return deployment

    def patch_deployment(self, body: Any, answer: kube_answers.Shows) -> Any:
        r = self.request
        return self.call(
            f"patch deployment {r.namespace}/{r.name}",
            self.backend.apps.patch_namespaced_deployment_with_http_info,
            r.name,
            r.namespace,
            body,
            shows=answer,
            dry_run=self.dry_run,
            field_manager=FIELD_MANAGER,
        )


def _restart(run: _Run, now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    r = run.request
    if run.read_deployment().spec.paused:
        # kubectl refuses too: the controller would roll out nothing now, and the new template
        # (with anything else changed meanwhile) at the next resume
        raise ActionFailed(
            f"deployment {r.namespace}/{r.name} is paused; resume it before restarting"
        )
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # RFC 3339, as kubectl writes it
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}}}
    return run.before, deployment_state(run.patch_deployment(body, kube_answers.restarted(stamp)))


def _scale(run: _Run, _: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    r, apps = run.request, run.backend.apps
    run.read_deployment()
    what = f"deployment {r.namespace}/{r.name} scale"
    scale = run.call(
        f"read {what}",
        apps.read_namespaced_deployment_scale_with_http_info,
        r.name,
        r.namespace,
        shows=kube_answers.SCALE,
    )
    run.before["replicas"] = scale.spec.replicas
    patched = run.call(
        f"patch {what}",
        apps.patch_namespaced_deployment_scale_with_http_info,
        r.name,
        r.namespace,
        {"spec": {"replicas": r.replicas}},
        shows=kube_answers.scaled(r.replicas),
        dry_run=run.dry_run,
        field_manager=FIELD_MANAGER,
    )
    return run.before, {**run.before, "replicas": patched.spec.replicas}


def _delete_pod(run: _Run, _: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    r, core = run.request, run.backend.core
    pod = run.call(
        f"read pod {r.namespace}/{r.name}",
        core.read_namespaced_pod_with_http_info,
        r.name,
        r.namespace,
        shows=kube_answers.POD,
    )
    owners = pod.metadata.owner_references or []
    run.before = {
        "phase": pod.status.phase if pod.status else None,
        "uid": pod.metadata.uid,
        "owner": f"{owners[0].kind}/{owners[0].name}" if owners else None,
        "deleted": False,
    }
    options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.metadata.uid))
    run.call(
        f"delete pod {r.namespace}/{r.name}",
        core.delete_namespaced_pod_with_http_info,
        r.name,
        r.namespace,
        body=options,
        shows=kube_answers.deleted(pod.metadata.uid),
        dry_run=run.dry_run,
    )
    return run.before, {**run.before, "deleted": True}


def _rollback(run: _Run, _: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    r = run.request
    what = f"{r.namespace}/{r.name}"
    deployment = run.read_deployment()
    if deployment.spec.paused:
        raise ActionFailed(f"deployment {what} is paused; resume it before rolling back")
    owned = _owned_replica_sets(run, deployment)
    target = rollback_target(list(owned), run.before["revision"], r.revision, what, run.before)
    sanitize = run.backend.api_client.sanitize_for_serialization
    template = sanitize(owned[target].spec.template)
    template.get("metadata", {}).get("labels", {}).pop(POD_TEMPLATE_HASH, None)
    if template == sanitize(deployment.spec.template):  # kubectl: "skipped rollback"
        return run.before, {**run.before, "rollback_to_revision": target}
    own = deployment.metadata.annotations or {}
    annotations = {k: v for k, v in own.items() if k in DEPLOYMENT_OWN_ANNOTATIONS}
    restored = owned[target].metadata.annotations or {}
    annotations |= {k: v for k, v in restored.items() if k not in DEPLOYMENT_OWN_ANNOTATIONS}
    patched = run.patch_deployment(
        [
            {"op": "replace", "path": "/spec/template", "value": template},
            # kubectl sends "replace"; "add" does the same and also works on a deployment that
            # has no annotations at all
            {"op": "add", "path": "/metadata/annotations", "value": annotations},
        ],
        kube_answers.rolled_back(owned[target].spec.template, target),
    )
    return run.before, {**deployment_state(patched), "rollback_to_revision": target}


def _owned_replica_sets(run: _Run, deployment: Any) -> dict[int, Any]:
    """The deployment's ReplicaSets (controller owner reference = its uid), by revision."""
    r = run.request
    labels = deployment.spec.selector.match_labels or {}
    selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    listing = run.call(
        f"list replicasets in {r.namespace}",
        run.backend.apps.list_namespaced_replica_set_with_http_info,
        r.namespace,
        label_selector=selector or None,
        shows=kube_answers.REPLICA_SETS,
    )
    owned: dict[int, Any] = {}
    for rs in listing.items:
        refs = rs.metadata.owner_references or []
        if not any(ref.uid == deployment.metadata.uid and ref.controller for ref in refs):
            continue
        revision = parse_revision((rs.metadata.annotations or {}).get(REVISION_ANNOTATION))
        if revision is not None:
            owned[revision] = rs
    return owned


_ACTIONS: dict[str, Callable[[_Run, datetime], tuple[dict[str, Any], dict[str, Any]]]] = {
    "restart_deployment": _restart,
    "scale_deployment": _scale,
    "delete_pod": _delete_pod,
    "rollback_deployment": _rollback,
}


class KubernetesBackend:
    """``EXECUTOR_BACKEND=kubernetes``. Takes a configured ``kubernetes.client.ApiClient`` and
    reads its answers at most ``max_answer_bytes`` each (:mod:`.kube_transport`)."""

    name = "kubernetes"

    def __init__(
        self,
        api_client: Any,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.api_client = guarded(api_client, limit=max_answer_bytes)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.timeout = timeout
        self._clock = clock

    def execute(self, request: ExecutorActionRequest) -> ActionOutcome:
        run = _Run(self, request)
        try:
            before, after = _ACTIONS[request.action](run, self._clock())
        except ActionFailed as exc:
            raise ActionFailed(
                exc.message, before=exc.before or run.before, audit_ids=run.audit_ids
            ) from None
        return ActionOutcome(
            before=before, after=after, dry_run=request.dry_run, audit_ids=run.audit_ids
        )

    def logs(self, request: ExecutorLogsRequest) -> PodLogs:
        ns = request.namespace
        try:
            if request.pod is not None:
                found = self.core.read_namespaced_pod(
                    request.pod, ns, _request_timeout=self.timeout
                )
                pods = [(request.pod, default_container(found))]
            else:
                pods = self._pods_of(ns, str(request.deployment))
            per_pod = max(request.max_lines // max(len(pods), 1), 1)
            lines: list[tuple[float | None, str]] = []
            read: list[str] = []
            refused: client.ApiException | None = None
            for pod, container in pods:
                try:
                    raw: Any = self.core.read_namespaced_pod_log(  # not preloaded: raw bytes
                        pod,
                        ns,
                        container=container,
                        timestamps=True,
                        since_seconds=request.since_s,
                        tail_lines=per_pod,
                        limit_bytes=MAX_LOG_BYTES,
                        _preload_content=False,
                        _request_timeout=self.timeout,
                    )
                except client.ApiException as exc:
                    # This pod has nothing to give (its container is still waiting to start, it
                    # is gone since the listing): the others' lines are still worth having.
                    refused = refused or exc
                    continue
                text = raw.data.decode("utf-8", errors="replace")
                lines += [parse_log_line(line) for line in text.splitlines() if line]
                read.append(pod)
            if refused is not None and not read:
                raise refused
        except client.ApiException as exc:
            raise LogsUnavailable(f"reading logs in {ns}: {api_error(exc)}") from None
        except KubeAnswerRefused as exc:
            raise LogsUnavailable(f"reading logs in {ns}: {exc.message}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise LogsUnavailable(
                f"reading logs in {ns}: kubernetes API unreachable ({type(exc).__name__})"
            ) from None
        lines.sort(key=lambda line: -1.0 if line[0] is None else line[0])  # stable per pod
        return PodLogs(pods=read, lines=lines[-request.max_lines :])

    def _pods_of(self, namespace: str, deployment: str) -> list[tuple[str, str | None]]:
        """Up to :data:`MAX_LOG_PODS` pods of the deployment's selector, by name, each with the
        container to read. Only those are listed (``limit``: the API server pages a list in name
        order): the list of every pod of a deployment of thousands could pass the answer cap."""
        found = self.apps.read_namespaced_deployment(
            deployment, namespace, _request_timeout=self.timeout
        )
        labels = (found.spec.selector.match_labels or {}) if found.spec.selector else {}
        if not labels:
            return []
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        listed = self.core.list_namespaced_pod(
            namespace, label_selector=selector, limit=MAX_LOG_PODS, _request_timeout=self.timeout
        )
        named = [(p.metadata.name, default_container(p)) for p in listed.items if p.metadata]
        return sorted((name, container) for name, container in named if name)[:MAX_LOG_PODS]

    def close(self) -> None:
        self.api_client.close()


def default_container(pod: Any) -> str | None:
    """The container ``kubectl logs`` reads when none is named: the one the pod's
    ``kubectl.kubernetes.io/default-container`` annotation names, else the first. The API server
    itself refuses a read naming no container of a pod with more than one (a sidecar)."""
    spec = pod.spec
    names = [c.name for c in (spec.containers if spec else None) or []]
    also = [c.name for c in (spec.init_containers if spec else None) or []]
    wanted = ((pod.metadata.annotations if pod.metadata else None) or {}).get(
        DEFAULT_CONTAINER_ANNOTATION
    )
    if wanted is not None and wanted in names + also:
        return str(wanted)
    return names[0] if names else None


def parse_log_line(line: str) -> tuple[float | None, str]:
    """``2026-11-23T10:00:00.123456789Z message`` (the API server's ``timestamps=true`` form)
    -> (epoch seconds, message); a line without a readable stamp keeps its whole text."""
    stamp, sep, message = line.partition(" ")
    if sep and stamp.endswith("Z") and "T" in stamp:
        whole, _, fraction = stamp[:-1].partition(".")
        try:
            at = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
            return at + (float(f"0.{fraction}") if fraction.isdigit() else 0.0), message
        except ValueError:
            pass
    return None, line
