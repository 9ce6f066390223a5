"""A successful answer that is valid JSON but does not show what the ``kubernetes`` backend asked
for (``{}``, ``null``, an object without the fields an action reads back), checked against the
FAKE API server answering one call with it (``replaced_answers``): the action fails with one line
and its audit ids, never a crash and never a success."""

from __future__ import annotations

from typing import Any

import pytest

from aegis.executor.backends.kubernetes import KubernetesBackend
from aegis.executor.errors import ActionFailed, LogsUnavailable
from aegis.executor.schemas import ExecutorLogsRequest
from tests.support.fake_kube import FakeKubeApiServer
from tests.unit.executor.conftest import action_request

DEPLOYMENT = "/apis/apps/v1/namespaces/demo/deployments/web"
SCALE = f"{DEPLOYMENT}/scale"
POD = "/api/v1/namespaces/demo/pods/web"
REPLICASETS = "/apis/apps/v1/namespaces/demo/replicasets"
UNREADABLE = "the kubernetes API answered 200 with something that is not a"
MAY_HAVE_ACTED = "; it may or may not have acted: check the target"
# A V1Deployment as the client reads it (spec, selector and template are all it requires),
# showing nothing an action reads.
BARE_DEPLOYMENT: dict[str, Any] = {"spec": {"selector": {}, "template": {}}}


def _fails(backend: KubernetesBackend, action: str, replicas: int | None = None) -> ActionFailed:
    request = (
        action_request(action) if replicas is None else action_request(action, replicas=replicas)
    )
    with pytest.raises(ActionFailed) as caught:
        backend.execute(request)
    return caught.value


@pytest.mark.parametrize(
    ("action", "call", "answer", "line"),
    [
        ("scale_deployment", DEPLOYMENT, None, "read deployment demo/web: {} V1Deployment"),
        (
            "restart_deployment",
            DEPLOYMENT,
            BARE_DEPLOYMENT,
            "read deployment demo/web: {} V1Deployment with metadata.uid",
        ),
        (
            "rollback_deployment",
            DEPLOYMENT,
            {"metadata": {"uid": "u"}, **BARE_DEPLOYMENT},
            "read deployment demo/web: {} V1Deployment with spec.template.spec.containers",
        ),
        (
            "scale_deployment",
            SCALE,
            {"spec": {}},
            "read deployment demo/web scale: {} V1Scale with spec.replicas",
        ),
        (
            "rollback_deployment",
            REPLICASETS,
            {"items": [{"spec": {"selector": {}}}]},  # a V1ReplicaSet needs no more
            "list replicasets in demo: {} V1ReplicaSetList with each item's metadata and "
            "spec.template",
        ),
    ],
)
def test_a_read_answered_with_an_empty_or_partial_object_fails_before_anything_is_written(
    kube_backend: KubernetesBackend,
    fake_kube: FakeKubeApiServer,
    action: str,
    call: str,
    answer: Any,
    line: str,
) -> None:
    fake_kube.replaced_answers[("GET", call)] = (200, answer)

    failed = _fails(kube_backend, action, 5 if action == "scale_deployment" else None)

    assert failed.message == line.format(UNREADABLE)
    assert failed.audit_ids == [r.audit_id for r in fake_kube.requests]
    assert fake_kube.mutating_requests() == []


def test_a_pod_read_without_its_uid_deletes_nothing(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    """Without the uid the DELETE would carry no precondition: whatever pod has the name."""
    fake_kube.add_pod("demo", "web")
    fake_kube.replaced_answers[("GET", POD)] = (200, {"metadata": {"name": "web"}})

    failed = _fails(kube_backend, "delete_pod")

    assert failed.message == f"read pod demo/web: {UNREADABLE} V1Pod with metadata.uid"
    assert fake_kube.mutating_requests() == []
    assert "web" in fake_kube.pod_names("demo")


@pytest.mark.parametrize("answer", [{}, {"spec": {}}, {"spec": {"replicas": 3}}])
def test_a_scale_answered_without_the_new_replicas_is_not_a_success(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer, answer: Any
) -> None:
    fake_kube.replaced_answers[("PATCH", SCALE)] = (200, answer)

    failed = _fails(kube_backend, "scale_deployment", replicas=5)

    assert failed.message == (
        f"patch deployment demo/web scale: {UNREADABLE} V1Scale with spec.replicas 5"
        + MAY_HAVE_ACTED
    )
    assert failed.audit_ids == [r.audit_id for r in fake_kube.requests]
    assert failed.before["replicas"] == 3
    assert fake_kube.deployment("demo", "web")["spec"]["replicas"] == 5  # it did act


def test_a_restart_answered_without_its_stamp_is_not_a_success(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    current = fake_kube.deployment("demo", "web")  # the deployment as it was: no stamp
    fake_kube.replaced_answers[("PATCH", DEPLOYMENT)] = (200, current)

    failed = _fails(kube_backend, "restart_deployment")

    sent = fake_kube.mutating_requests()[0].body
    stamp = sent["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert failed.message == (
        f"patch deployment demo/web: {UNREADABLE} V1Deployment with "
        f"kubectl.kubernetes.io/restartedAt {stamp}" + MAY_HAVE_ACTED
    )
    assert failed.audit_ids == [r.audit_id for r in fake_kube.requests]


@pytest.mark.parametrize(
    "answer",
    [
        {"metadata": {"uid": "u"}, **BARE_DEPLOYMENT},
        "current",  # the deployment as it was, still at revision 2's images
    ],
)
def test_a_rollback_answered_without_the_restored_template_is_not_a_success(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer, answer: Any
) -> None:
    if answer == "current":
        answer = fake_kube.deployment("demo", "web")
    fake_kube.replaced_answers[("PATCH", DEPLOYMENT)] = (200, answer)

    failed = _fails(kube_backend, "rollback_deployment")

    assert failed.message == (
        f"patch deployment demo/web: {UNREADABLE} V1Deployment with the pod template of "
        "revision 1" + MAY_HAVE_ACTED
    )
    assert failed.before["revision"] == 2
    assert failed.audit_ids == [r.audit_id for r in fake_kube.requests]


@pytest.mark.parametrize("answer", [{}, None, {"metadata": {"uid": "another"}}])
def test_a_pod_delete_answered_without_the_pod_deleted_is_not_a_success(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer, answer: Any
) -> None:
    fake_kube.add_pod("demo", "web")
    uid = fake_kube.pods[("demo", "web")]["metadata"]["uid"]
    fake_kube.replaced_answers[("DELETE", POD)] = (200, answer)

    failed = _fails(kube_backend, "delete_pod")

    shown = "" if answer is None else f" with metadata.uid {uid}"
    assert failed.message == f"delete pod demo/web: {UNREADABLE} V1Pod{shown}" + MAY_HAVE_ACTED
    assert failed.before["uid"] == uid
    assert failed.audit_ids == [r.audit_id for r in fake_kube.requests]


@pytest.mark.parametrize("target", ["pod", "deployment"])
def test_a_log_read_answered_with_null_is_a_refusal_not_a_crash(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer, target: str
) -> None:
    fake_kube.add_pod("demo", "web")
    fake_kube.replaced_answers[("GET", POD if target == "pod" else DEPLOYMENT)] = (200, None)

    with pytest.raises(LogsUnavailable) as caught:
        kube_backend.logs(
            ExecutorLogsRequest.model_validate(
                {"namespace": "demo", target: "web", "requested_by": "ai-engine"}
            )
        )

    kind = "V1Pod" if target == "pod" else "V1Deployment"
    assert caught.value.message == f"reading logs in demo: {UNREADABLE} {kind}"
