"""Every deployment file parses, and every Kubernetes object is a well-formed object."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.unit.deploy.manifests import (
    COMPOSE,
    COMPOSE_INCLUDE,
    HELM,
    K8S,
    REPO,
    WORKFLOWS,
    k8s_object_files,
    load_docs,
    yaml_files,
)

# Helm templates are Go templates, not YAML, until rendered (test_helm_chart.py covers them).
PARSED = [
    *yaml_files(K8S),
    *(p for p in yaml_files(HELM) if "templates" not in p.parts),
    COMPOSE,
    COMPOSE_INCLUDE,
    *yaml_files(WORKFLOWS),
]


@pytest.mark.parametrize("path", PARSED, ids=lambda p: str(p.relative_to(REPO)))
def test_deployment_yaml_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    assert any(doc is not None for doc in docs), f"{path} holds no document"


def test_the_runbook_paths_exist() -> None:
    for relative in (
        "k8s/namespace.yaml",
        "k8s/secrets.yaml",
        "k8s/overlays/staging/kustomization.yaml",
        "k8s/overlays/production/kustomization.yaml",
        "k8s/argo-rollouts/example-rollout.yaml",
        "k8s/external-secrets/external-secret-cosign.yaml",
        "backend/docker-compose.prod.yml",
        "helm/Chart.yaml",
        "helm/values.aws.yaml",
        "helm/values.gcp.yaml",
        "infra/terraform/overlays/aws/main.tf",
        ".github/workflows/sdk-scan.yml",
        ".github/workflows/verify-model-signatures-aws-oidc.yml",
        ".github/workflows/helm-deploy-aws.yml",
        "scripts/simulate_canary_load.py",
        "Dockerfile",
    ):
        assert (REPO / relative).is_file(), f"{relative} is missing"


@pytest.mark.parametrize("path", k8s_object_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_kubernetes_object_has_api_version_kind_and_name(path: Path) -> None:
    for doc in load_docs(path):
        assert isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], path
        assert isinstance(doc.get("kind"), str) and doc["kind"], path
        assert isinstance(doc.get("metadata", {}).get("name"), str), f"{path}: {doc['kind']}"


def test_namespace_file_and_base_namespace_are_the_same_object() -> None:
    assert load_docs(K8S / "namespace.yaml") == load_docs(K8S / "base" / "namespace.yaml")
    (namespace,) = load_docs(K8S / "namespace.yaml")
    assert namespace["metadata"]["name"] == "aegis"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_kustomization_lists_files_that_exist() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text())
        listed = list(doc.get("resources", []))
        listed += [p["path"] for p in doc.get("patches", []) if "path" in p]
        assert listed, f"{kustomization} lists nothing"
        for entry in listed:
            target = (kustomization.parent / entry).resolve()
            assert target.exists(), f"{kustomization}: {entry} does not exist"
            if target.is_dir():
                assert (target / "kustomization.yaml").is_file(), f"{entry} has no kustomization"
