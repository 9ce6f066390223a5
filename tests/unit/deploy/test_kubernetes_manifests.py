"""k8s/: the Kustomize base and overlays, the Secrets, External Secrets.

The same rules (tests/unit/deploy/checks.py) run on the base as written and on each overlay as
`kubectl kustomize` renders it (`kubectl apply -k` applies exactly that). kubectl must be on PATH
for the overlay tests: without it they skip, and under CI=true they fail.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.unit.deploy import checks
from tests.unit.deploy.manifests import (
    JOBS,
    K8S,
    base_objects,
    by_name,
    env_secret_refs,
    job_header_secrets,
    kubectl_kustomize,
    load_docs,
    secret_setting_names,
    setting_names,
)

OVERLAYS = ["staging", "production"]
CHECK_IDS = [c.__name__ for c in checks.ALL_CHECKS]


@pytest.mark.parametrize("check", checks.ALL_CHECKS, ids=CHECK_IDS)
def test_base_manifests(check: Callable[[list[dict[str, Any]]], object]) -> None:
    check(base_objects())


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered_overlay(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    objects = kubectl_kustomize(K8S / "overlays" / request.param)
    require(objects is not None, "kubectl is not installed: rendered overlays not checked")
    assert objects is not None
    return objects


@pytest.mark.parametrize("check", checks.ALL_CHECKS, ids=CHECK_IDS)
def test_rendered_overlays(
    rendered_overlay: list[dict[str, Any]], check: Callable[[list[dict[str, Any]]], object]
) -> None:
    check(rendered_overlay)


def test_rendered_overlays_keep_every_object_in_the_aegis_namespace(
    rendered_overlay: list[dict[str, Any]],
) -> None:
    for obj in rendered_overlay:
        if obj["kind"] in {"Namespace", "Role", "RoleBinding"}:
            continue
        assert obj["metadata"].get("namespace") == "aegis", obj["metadata"]["name"]


def test_overlay_patches_only_set_settings() -> None:
    for overlay in OVERLAYS:
        for path in (K8S / "overlays" / overlay).glob("*.yaml"):
            for doc in load_docs(path):
                if doc.get("kind") == "ConfigMap":
                    unknown = set(doc["data"]) - setting_names()
                    assert not unknown, f"{path} sets {unknown}"
                    assert not set(doc["data"]) & secret_setting_names(), path


def test_staging_executor_acts_where_k8s_rbac_grants_rights() -> None:
    patch = yaml.safe_load((K8S / "overlays" / "staging" / "config-patch.yaml").read_text())
    (role,) = load_docs(K8S / "rbac" / "executor-role.yaml")
    assert patch["data"]["EXECUTOR_ALLOWED_NAMESPACES"] == role["metadata"]["namespace"]


def test_the_jobs_read_only_secrets_the_kustomize_install_or_their_headers_make() -> None:
    """k8s/jobs/ is applied beside k8s/base: the backup reads the live DATABASE_URL where the
    backend does (a Secret of k8s/secrets.yaml); every other Secret a job reads is one that a
    job's header tells the operator to create (the restore target, the backup key)."""
    backend = by_name(base_objects(), "Deployment")["backend"]
    (live,) = env_secret_refs([backend])["DATABASE_URL"]
    secrets = by_name(load_docs(K8S / "secrets.yaml"), "Secret")
    assert live[1] in secrets[live[0]]["stringData"]
    made = set().union(*(job_header_secrets(path) for path in JOBS.glob("*.yaml")))
    assert env_secret_refs(load_docs(JOBS / "backup-cronjob.yaml"))["DATABASE_URL"] == {live}
    for path in sorted(JOBS.glob("*.yaml")):
        for variable, refs in env_secret_refs(load_docs(path)).items():
            assert refs <= made | {live}, f"{path.name} {variable}: {refs - made} made by nothing"


def _secret_refs(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    refs = set()
    for deployment in [o for o in objects if o["kind"] == "Deployment"]:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional", False):
                    refs.add((ref["name"], ref["key"]))
        for volume in deployment["spec"]["template"]["spec"].get("volumes", []):
            secret = volume.get("secret")
            if secret and not secret.get("optional", False):
                for item in secret.get("items", []):
                    refs.add((secret["secretName"], item["key"]))
    return refs


def test_secrets_file_has_every_key_the_deployments_require_and_only_placeholders() -> None:
    secrets = by_name(load_docs(K8S / "secrets.yaml"), "Secret")
    assert set(secrets) == {
        "aegis-backend-secrets",
        "aegis-ai-engine-secrets",
        "aegis-executor-secrets",
    }
    for name, key in _secret_refs(base_objects()):
        assert key in secrets[name]["stringData"], f"{name} lacks {key}"
    for secret in secrets.values():
        assert "data" not in secret, "base64 data could hide a real value"
        for key, value in secret["stringData"].items():
            assert "REPLACE_ME" in value, f"{secret['metadata']['name']}.{key} is not a placeholder"
            if key.isupper():
                assert key in setting_names(), f"{key} is not a setting"


def test_cosign_external_secret_fills_the_secret_the_engine_mounts() -> None:
    mounted = checks.check_mounted_keys_match_settings(base_objects())
    docs = load_docs(K8S / "external-secrets" / "external-secret-cosign.yaml")
    external = by_name(docs, "ExternalSecret")
    (cosign,) = external.values()
    assert cosign["spec"]["target"]["name"] == mounted["AEGIS_TRUSTED_KEYS"]
    assert [d["secretKey"] for d in cosign["spec"]["data"]] == ["cosign.pub"]
    store = cosign["spec"]["secretStoreRef"]["name"]
    assert store in by_name(docs, "SecretStore")


def test_service_external_secrets_target_the_runbook_secret_names() -> None:
    docs = load_docs(K8S / "external-secrets" / "external-secrets-aegis.yaml")
    targets = {d["spec"]["target"]["name"] for d in docs if d["kind"] == "ExternalSecret"}
    refs = {name for name, _ in _secret_refs(base_objects())}
    assert refs - {"aegis-cosign-public-key"} <= targets


DEPLOY_DOC = K8S.parent / "docs" / "operations" / "deploy.md"


def _env_of_backend(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = by_name(objects, "Deployment")["backend"]["spec"]["template"]["spec"][
        "containers"
    ]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_base_backend_believes_no_proxy() -> None:
    assert _env_of_backend(base_objects())["TRUSTED_PROXIES"] == ""


def test_the_trusted_proxies_overlay_of_the_deploy_doc_sets_the_backends(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DEPLOY_DOC.read_text(), re.DOTALL)
    (block,) = [textwrap.dedent(b) for b in blocks if "TRUSTED_PROXIES" in b]
    overlay = yaml.safe_load(block)
    # the doc's overlay sits beside k8s/overlays/production; this one is under tmp_path
    overlay["resources"] = [os.path.relpath(K8S / "overlays" / "production", tmp_path)]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    objects = kubectl_kustomize(tmp_path)
    require(objects is not None, "kubectl is not installed: the doc's overlay not rendered")
    assert objects is not None
    assert _env_of_backend(objects)["TRUSTED_PROXIES"] == "10.20.0.0/16"
    for check in checks.ALL_CHECKS:
        check(objects)
