"""k8s/rbac: the executor's Role grants every call the backend makes, in one namespace, and
nothing beyond the documented verbs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from aegis.executor.backends.kubernetes import KubernetesBackend
from aegis.executor.schemas import ExecutorActionRequest, ExecutorLogsRequest
from tests.support.fake_kube import FakeKubeApiServer, RecordedRequest

RBAC = Path(__file__).resolve().parents[3] / "k8s" / "rbac"
ALLOWED = {
    ("", "pods"): {"get", "list", "delete"},
    ("", "pods/log"): {"get"},
    ("apps", "deployments"): {"get", "list", "patch", "update"},
    ("apps", "deployments/scale"): {"get", "patch", "update"},
    ("apps", "replicasets"): {"get", "list"},
}


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((RBAC / name).read_text())
    return loaded


def _grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _needed(request: RecordedRequest) -> tuple[str, str, str]:
    match = re.fullmatch(
        r"/(?:api/v1|apis/(?P<group>[^/]+)/v1)/namespaces/[^/]+/(?P<resource>[^/]+)"
        r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?",
        request.path,
    )
    assert match, request.path
    resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
    verb = {"GET": "get" if match["name"] else "list", "PATCH": "patch", "DELETE": "delete"}
    return (match["group"] or "", resource, verb[request.method])


def test_the_role_is_namespaced_and_grants_only_the_documented_verbs() -> None:
    role = _load("executor-role.yaml")

    assert role["kind"] == "Role" and role["metadata"]["namespace"] == "staging"
    expected = {(g, r, v) for (g, r), verbs in ALLOWED.items() for v in verbs}
    assert _grants(role) == expected


def test_the_binding_ties_the_role_to_the_executor_service_account() -> None:
    binding = _load("executor-rolebinding.yaml")
    account = _load("executor-serviceaccount.yaml")

    assert binding["metadata"]["namespace"] == "staging"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "aegis-executor",
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]


def test_every_call_the_backend_makes_is_granted(
    kube_backend: KubernetesBackend, fake_kube: FakeKubeApiServer
) -> None:
    def act(action: str, name: str, **params: int) -> None:
        kube_backend.execute(
            ExecutorActionRequest(
                action_id="a",
                action=action,
                namespace="demo",
                name=name,
                params=params,
                idempotency_key=action,
                requested_by="alice",
            )
        )

    act("scale_deployment", "web", replicas=4)
    act("restart_deployment", "web")
    act("rollback_deployment", "web")
    act("delete_pod", next(n for n in fake_kube.pod_names("demo") if n.startswith("web-")))
    for target in ({"deployment": "web"}, {"pod": fake_kube.pod_names("demo")[0]}):
        kube_backend.logs(ExecutorLogsRequest(namespace="demo", requested_by="ai-engine", **target))

    needed = {_needed(request) for request in fake_kube.requests}
    assert needed <= _grants(_load("executor-role.yaml"))
