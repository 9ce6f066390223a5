"""k8s/: the Kustomize base and overlays, the Secrets, External Secrets.

The same rules (tests/unit/deploy/checks.py) run on the base as written and on each overlay as
`kubectl kustomize` renders it (`kubectl apply -k` applies exactly that). kubectl must be on PATH
for the overlay tests: without it they skip, and under CI=true they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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


AUDIT_DOC = K8S.parent / "docs" / "audit.md"
PERSISTENCE = K8S / "components" / "executor-persistence"


def _kustomize_with_persistence(tmp_path: Path, overlay: str) -> list[dict[str, Any]]:
    """An overlay of k8s/overlays/<overlay> with the executor-persistence component, as
    docs/audit.md writes it (its paths are relative to a folder beside k8s/overlays/<overlay>)."""
    blocks = re.findall(r"```yaml\n(.*?)```", AUDIT_DOC.read_text(), re.DOTALL)
    (block,) = [textwrap.dedent(b) for b in blocks if "executor-persistence" in b]
    kustomization = yaml.safe_load(block)
    beside = K8S / "overlays" / "production-journal"
    paths = {"resources": K8S / "overlays" / "production", "components": PERSISTENCE}
    for key, target in paths.items():
        (entry,) = kustomization[key]
        assert (beside / entry).resolve() == target, f"{key}: {entry} is not {target}"
    kustomization["resources"] = [os.path.relpath(K8S / "overlays" / overlay, tmp_path)]
    kustomization["components"] = [os.path.relpath(PERSISTENCE, tmp_path)]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    objects = kubectl_kustomize(tmp_path)
    require(objects is not None, "kubectl is not installed: the component not rendered")
    assert objects is not None
    return objects


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_executor_persistence_puts_the_data_dir_on_a_claim(tmp_path: Path, overlay: str) -> None:
    """The executor's audit journal (<AEGIS_DATA_DIR>/audit-journal.jsonl) is lost with the pod
    on the base's emptyDir; with the component it is on a ReadWriteOnce claim, as the chart's
    executor.persistence does, and the Deployment updates with Recreate (one pod on the claim)."""
    objects = _kustomize_with_persistence(tmp_path, overlay)
    for check in checks.ALL_CHECKS:
        check(objects)
    (claim,) = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert claim["metadata"]["namespace"] == "aegis"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    executor = by_name(objects, "Deployment")["executor"]
    assert executor["spec"]["strategy"] == {"type": "Recreate"}
    assert executor["spec"]["replicas"] == 1
    pod = executor["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (config_ref,) = [e["configMapRef"]["name"] for e in container["envFrom"]]
    data_dir = by_name(objects, "ConfigMap")[config_ref]["data"]["AEGIS_DATA_DIR"]
    env = {e["name"] for e in container.get("env", [])}
    assert "AEGIS_DATA_DIR" not in env  # the ConfigMap's value is the one in force
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume == {
        "name": mount["name"],
        "persistentVolumeClaim": {"claimName": "aegis-executor-data"},
    }
    assert claim["metadata"]["name"] == "aegis-executor-data"
    # Nothing else changes: without the component the executor keeps its emptyDir.
    plain = by_name(kubectl_kustomize(K8S / "overlays" / overlay) or [], "Deployment")
    assert "emptyDir" in next(
        v
        for v in plain["executor"]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == mount["name"]
    )


def test_executor_persistence_refuses_more_than_one_executor(tmp_path: Path) -> None:
    """One ReadWriteOnce claim holds one pod's journal: adding the component to an overlay that
    gives the executor two replicas stops the render, as the chart's does."""
    inner, outer = tmp_path / "two-executors", tmp_path / "journal"
    for directory, extra in (
        (inner, {"resources": [os.path.relpath(K8S / "base", inner)],
                 "replicas": [{"name": "executor", "count": 2}]}),
        (outer, {"resources": ["../two-executors"],
                 "components": [os.path.relpath(PERSISTENCE, outer)]}),
    ):  # fmt: skip
        directory.mkdir()
        kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
        (directory / "kustomization.yaml").write_text(yaml.safe_dump({**kustomization, **extra}))
    kubectl = shutil.which("kubectl")
    require(kubectl is not None, "kubectl is not installed: the component not rendered")
    assert kubectl is not None
    assert kubectl_kustomize(inner) is not None  # the overlay alone renders
    result = subprocess.run(
        [kubectl, "kustomize", str(outer)], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "/spec/replicas" in result.stderr, result.stderr
