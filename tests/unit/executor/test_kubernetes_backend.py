"""What the ``kubernetes`` backend sends on the wire, checked at the FAKE API server."""

from __future__ import annotations

import time

import pytest

from aegis.executor.backends.kubernetes import MAX_LOG_PODS, KubernetesBackend, parse_log_line
from aegis.executor.errors import ActionFailed, LogsUnavailable
from aegis.executor.schemas import ExecutorLogsRequest
from tests.support.fake_kube import FakeKubeApiServer
from tests.support.services import free_port
from tests.unit.executor.conftest import action_request


def test_every_api_call_contributes_its_audit_id_in_order(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    outcome = kube_backend.execute(action_request("rollback_deployment"))

    assert outcome.audit_ids == [r.audit_id for r in fake_kube.requests]
    assert [r.method for r in fake_kube.requests] == ["GET", "GET", "PATCH"]


def test_scale_goes_through_the_scale_subresource(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    kube_backend.execute(action_request("scale_deployment", replicas=4))

    (write,) = fake_kube.mutating_requests()
    assert write.path == "/apis/apps/v1/namespaces/demo/deployments/web/scale"
    assert write.body == {"spec": {"replicas": 4}}
    assert write.query.get("fieldManager") == "aegis-executor"


def test_restart_patches_the_restarted_at_annotation_like_kubectl(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    outcome = kube_backend.execute(action_request("restart_deployment"))

    (write,) = fake_kube.mutating_requests()
    assert write.content_type == "application/strategic-merge-patch+json"
    annotations = write.body["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"kubectl.kubernetes.io/restartedAt": outcome.after["restarted_at"]}
    # The controller rolled a new ReplicaSet: the deployment is now at revision 3.
    deployment = fake_kube.deployment("demo", "web")
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"


def test_rollback_uses_a_json_patch_of_the_previous_replica_set_template(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    kube_backend.execute(action_request("rollback_deployment"))

    (write,) = fake_kube.mutating_requests()
    assert write.content_type == "application/json-patch+json"
    op, _ = write.body
    assert (op["op"], op["path"]) == ("replace", "/spec/template")
    assert op["value"]["spec"]["containers"] == [{"name": "web", "image": "nginx:1.26"}]
    assert "pod-template-hash" not in op["value"]["metadata"]["labels"]


def test_rollback_restores_the_revisions_change_cause_like_kubectl(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.add_deployment(
        "demo",
        "api",
        revisions=[{"api": "api:1"}, {"api": "api:2"}],
        causes=["release 1", "release 2 (broken)"],
    )

    kube_backend.execute(action_request("rollback_deployment", name="api"))

    annotations = fake_kube.deployment("demo", "api")["metadata"]["annotations"]
    assert annotations["kubernetes.io/change-cause"] == "release 1"
    # the deployment keeps its own bookkeeping: the controller made the rollback revision 3
    assert annotations["deployment.kubernetes.io/revision"] == "3"


def test_rollback_ignores_replica_sets_owned_by_another_deployment(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    # Same labels, so the label selector returns its ReplicaSets too; owner refs tell them apart.
    fake_kube.add_deployment(
        "demo",
        "web-canary",
        replicas=1,
        labels={"app": "web"},
        revisions=[{"web": "nginx:9.0"}, {"web": "nginx:9.1"}, {"web": "nginx:9.2"}],
    )

    outcome = kube_backend.execute(action_request("rollback_deployment"))

    assert outcome.after["rollback_to_revision"] == 1
    assert outcome.after["images"] == {"web": "nginx:1.26"}


def test_rollback_of_a_paused_deployment_fails(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.deployments[("demo", "web")]["spec"]["paused"] = True

    with pytest.raises(ActionFailed, match="is paused"):
        kube_backend.execute(action_request("rollback_deployment"))
    assert fake_kube.mutating_requests() == []


def test_restart_of_a_paused_deployment_fails_like_kubectl(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    # A paused deployment is not rolled out: stamping restartedAt would restart nothing now and
    # everything at the next resume (kubectl: "can't restart paused deployment").
    fake_kube.deployments[("demo", "web")]["spec"]["paused"] = True
    pods = fake_kube.pod_names("demo")

    with pytest.raises(ActionFailed, match="demo/web is paused") as caught:
        kube_backend.execute(action_request("restart_deployment"))

    assert fake_kube.mutating_requests() == []
    assert fake_kube.pod_names("demo") == pods
    assert caught.value.before["restarted_at"] is None


def test_pod_delete_carries_a_uid_precondition(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    victim = next(name for name in fake_kube.pod_names("demo") if name.startswith("web-"))
    uid = fake_kube.pods[("demo", victim)]["metadata"]["uid"]

    outcome = kube_backend.execute(action_request("delete_pod", name=victim))

    (write,) = fake_kube.mutating_requests()
    assert write.body["preconditions"] == {"uid": uid}
    assert outcome.before["owner"].startswith("ReplicaSet/web-")


def test_a_dry_run_sends_dry_run_all_on_every_write(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    for request in (
        action_request("scale_deployment", dry_run=True, replicas=2),
        action_request("restart_deployment", dry_run=True),
        action_request("rollback_deployment", dry_run=True),
        action_request("delete_pod", name=fake_kube.pod_names("demo")[0], dry_run=True),
    ):
        kube_backend.execute(request)

    writes = fake_kube.mutating_requests()
    assert len(writes) == 4
    assert all(w.query.get("dryRun") == "All" for w in writes)


def test_a_refusal_from_the_api_server_is_a_one_line_failure_with_its_audit_id(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    with pytest.raises(ActionFailed) as caught:
        kube_backend.execute(action_request("delete_pod", name="ghost"))

    assert caught.value.message == 'read pod demo/ghost: 404 pods "ghost" not found'
    assert caught.value.audit_ids == [fake_kube.requests[-1].audit_id]


def test_an_admission_webhooks_denial_over_several_lines_is_a_one_line_failure(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    fake_kube.admission_denial = "[replica-cap] at most 4 replicas\n[owner] no owner label"

    with pytest.raises(ActionFailed) as caught:
        kube_backend.execute(action_request("scale_deployment", replicas=5))

    assert caught.value.message == (
        'patch deployment demo/web scale: 403 admission webhook "validation.gatekeeper.sh" denied '
        "the request: [replica-cap] at most 4 replicas [owner] no owner label"
    )
    assert fake_kube.deployment("demo", "web")["spec"]["replicas"] != 5


def test_an_unreachable_api_server_is_a_failure_not_a_crash() -> None:
    from kubernetes import client

    configuration = client.Configuration(host=f"http://127.0.0.1:{free_port()}")
    configuration.retries = 0
    backend = KubernetesBackend(client.ApiClient(configuration), timeout=(1.0, 1.0))
    try:
        with pytest.raises(ActionFailed, match="kubernetes API unreachable"):
            backend.execute(action_request("scale_deployment", replicas=2))
    finally:
        backend.close()


# --- logs (read only) ------------------------------------------------------------------------


def _logs(**over: object) -> ExecutorLogsRequest:
    values: dict[str, object] = {
        "namespace": "demo",
        "deployment": "web",
        "since_s": 3600,
        "max_lines": 100,
        "requested_by": "ai-engine",
    }
    return ExecutorLogsRequest.model_validate(values | over)


def test_logs_of_a_deployment_merge_its_pods_lines_in_time_order_like_kubectl_logs(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    now = time.time()
    web = sorted(p for p in fake_kube.pod_names("demo") if p.startswith("web-"))
    first, second, _third = web
    fake_kube.add_log_lines("demo", first, [(now - 30, b"GET /health 200"), (now - 10, b"boom")])
    fake_kube.add_log_lines("demo", second, [(now - 20, b"panic: nil map \xff")])
    fake_kube.add_log_lines("demo", second, [(now - 7200, b"too old for the window")])

    found = kube_backend.logs(_logs())

    assert found.pods == web
    assert [text for _, text in found.lines] == ["GET /health 200", "panic: nil map \ufffd", "boom"]
    assert [round(at or 0) for at, _ in found.lines] == [
        round(now - 30),
        round(now - 20),
        round(now - 10),
    ]
    reads = [r for r in fake_kube.requests if r.path.endswith("/log")]
    assert reads and all(
        r.query["timestamps"] == "true" and r.query["sinceSeconds"] == "3600" for r in reads
    )
    assert all(r.method == "GET" for r in fake_kube.requests)  # reading changes nothing


def test_logs_are_cut_to_the_newest_lines_asked_for(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    now = time.time()
    pod = fake_kube.pod_names("demo")[0]
    fake_kube.add_log_lines("demo", pod, [(now - 100 + i, f"line {i}".encode()) for i in range(50)])

    found = kube_backend.logs(_logs(deployment=None, pod=pod, max_lines=5))

    assert found.pods == [pod]
    assert [text for _, text in found.lines] == [f"line {i}" for i in range(45, 50)]


def test_logs_of_pods_with_a_sidecar_come_from_the_first_container_like_kubectl_logs(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    # The API server refuses a log read that names no container of a two-container pod
    # (an injected istio-proxy, a log shipper); kubectl picks the first container.
    now = time.time()
    fake_kube.add_deployment(
        "demo", "shop", replicas=1, revisions=[{"shop": "shop:1", "istio-proxy": "proxyv2:1.22"}]
    )
    (pod,) = [name for name in fake_kube.pod_names("demo") if name.startswith("shop-")]
    fake_kube.add_log_lines("demo", pod, [(now - 5, b"panic: boom")], container="shop")
    fake_kube.add_log_lines("demo", pod, [(now - 4, b"upstream reset")], container="istio-proxy")

    by_deployment = kube_backend.logs(_logs(deployment="shop"))
    by_pod = kube_backend.logs(_logs(deployment=None, pod=pod))

    assert by_deployment.pods == by_pod.pods == [pod]
    assert [text for _, text in by_deployment.lines] == ["panic: boom"]
    assert [text for _, text in by_pod.lines] == ["panic: boom"]


def test_logs_come_from_the_container_the_default_container_annotation_names(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    now = time.time()
    fake_kube.add_deployment(
        "demo",
        "shop",
        replicas=1,
        revisions=[{"linkerd-proxy": "proxy:2.14", "shop": "shop:1"}],
        pod_annotations={"kubectl.kubernetes.io/default-container": "shop"},
    )
    (pod,) = [name for name in fake_kube.pod_names("demo") if name.startswith("shop-")]
    fake_kube.add_log_lines("demo", pod, [(now - 5, b"panic: boom")], container="shop")

    found = kube_backend.logs(_logs(deployment="shop"))

    assert [text for _, text in found.lines] == ["panic: boom"]


def test_logs_of_a_deployment_skip_a_pod_whose_container_has_not_started(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    # Mid-rollout (after a restart, say) one pod is still ContainerCreating: the API server
    # refuses to read it, and the others still have the lines the incident needs.
    now = time.time()
    first, second, third = sorted(p for p in fake_kube.pod_names("demo") if p.startswith("web-"))
    fake_kube.pods[("demo", first)]["status"]["phase"] = "Pending"
    fake_kube.add_log_lines("demo", second, [(now - 20, b"panic: nil map")])
    fake_kube.add_log_lines("demo", third, [(now - 10, b"boom")])

    found = kube_backend.logs(_logs())

    assert found.pods == [second, third]
    assert [text for _, text in found.lines] == ["panic: nil map", "boom"]


def test_logs_of_a_deployment_none_of_whose_pods_can_be_read_are_a_refusal(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    for name in fake_kube.pod_names("demo"):
        fake_kube.pods[("demo", name)]["status"]["phase"] = "Pending"

    with pytest.raises(LogsUnavailable, match="is waiting to start"):
        kube_backend.logs(_logs())


def test_logs_of_a_missing_pod_are_a_one_line_refusal(kube_backend: KubernetesBackend) -> None:
    with pytest.raises(LogsUnavailable, match='reading logs in demo: 404 pods "ghost" not found'):
        kube_backend.logs(_logs(deployment=None, pod="ghost"))


def test_a_log_line_keeps_its_text_when_its_stamp_cannot_be_read() -> None:
    assert parse_log_line("2026-11-23T10:00:00.5Z ready") == (1795428000.5, "ready")
    assert parse_log_line("not-a-stamp ready") == (None, "not-a-stamp ready")


def test_logs_of_a_deployment_with_thousands_of_pods_list_only_the_pods_read(
    fake_kube: FakeKubeApiServer,
) -> None:
    """The list of every pod of a big deployment passed the answer cap and the read was refused,
    though only MAX_LOG_PODS pods are read: the list now asks for no more (``limit``)."""
    fake_kube.add_deployment("demo", "big", replicas=2000, revisions=[{"big": "demo/big:1"}])
    first = sorted(p for p in fake_kube.pod_names("demo") if p.startswith("big-"))[:MAX_LOG_PODS]
    fake_kube.add_log_lines("demo", first[0], [(time.time() - 5, b"still here")])
    backend = KubernetesBackend(fake_kube.api_client(), max_answer_bytes=256 * 1024)
    try:
        found = backend.logs(_logs(deployment="big"))
    finally:
        backend.close()

    assert found.pods == first
    assert [text for _, text in found.lines] == ["still here"]
    (listed,) = [r for r in fake_kube.requests if r.path == "/api/v1/namespaces/demo/pods"]
    assert listed.query["limit"] == str(MAX_LOG_PODS)
    assert listed.query["labelSelector"] == "app=big"
