"""Loading the deployment files and the facts about Aegis they must agree with.

The facts come from the code, never from a copy: setting names from
``aegis.core.config.Settings``, default ports from its field defaults, health routes from the
app modules, exported metric names from ``aegis.core.metrics`` (via the observability tests'
extractor).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices

from aegis.core.config import Settings

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "k8s"
HELM = REPO / "helm"
JOBS = K8S / "jobs"
COMPOSE = REPO / "backend" / "docker-compose.prod.yml"
COMPOSE_INCLUDE = REPO / "deploy" / "compose" / "docker-compose.yml"
WORKFLOWS = REPO / ".github" / "workflows"
TERRAFORM = REPO / "infra" / "terraform"
SRC = REPO / "src" / "aegis"

# Which Deployment runs which service, and the Settings field of its port.
SERVICES = {"backend": "backend", "ai-engine": "engine", "executor": "executor"}


def load_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of a file (multi-document aware)."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def yaml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())


def k8s_object_files() -> list[Path]:
    """Plain Kubernetes manifests (kustomization files and promtool rule tests are not objects)."""
    skip = {"kustomization.yaml"}
    rules = {K8S / "prometheus"}
    return [
        p for p in yaml_files(K8S) if p.name not in skip and not any(r in p.parents for r in rules)
    ]


def k8s_objects(paths: list[Path] | None = None) -> list[dict[str, Any]]:
    return [doc for path in paths or k8s_object_files() for doc in load_docs(path)]


def base_objects() -> list[dict[str, Any]]:
    """The objects of k8s/base as listed in its kustomization (including ../rbac)."""
    return kustomize_inputs(K8S / "base")


def kustomize_inputs(directory: Path) -> list[dict[str, Any]]:
    """The resources a kustomization lists, recursively (patches not applied)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects.extend(kustomize_inputs(target))
        else:
            objects.extend(load_docs(target))
    return objects


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]] | None:
    """The rendered overlay via `kubectl kustomize`, or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def env_secret_refs(objects: list[dict[str, Any]]) -> dict[str, set[tuple[str, str]]]:
    """What the containers of ``objects`` (Deployments, Jobs, CronJobs) read into each
    environment variable from a Secret: variable -> {(Secret, key)}."""
    refs: dict[str, set[tuple[str, str]]] = {}
    for obj in objects:
        spec = obj.get("spec", {})
        template = spec.get("jobTemplate", {}).get("spec", spec).get("template")
        if obj.get("kind") not in {"Deployment", "Job", "CronJob"} or template is None:
            continue
        pod = template["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(entry["name"], set()).add((ref["name"], ref["key"]))
    return refs


def job_header_secrets(path: Path) -> set[tuple[str, str]]:
    """The Secrets (and key) a k8s/jobs file's header tells the operator to create:
    ``kubectl -n aegis create secret generic NAME \\ --from-literal=KEY=...``."""
    header = " ".join(
        line.lstrip("#").strip().removesuffix("\\")
        for line in path.read_text().splitlines()
        if line.startswith("#")
    )
    return set(re.findall(r"create secret generic ([\w.-]+)\s+--from-literal=(\w+)=", header))


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def by_name(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in of_kind(objects, kind)}


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects that run pods: Deployments, Jobs and CronJobs."""
    return [o for o in objects if o.get("kind") in {"Deployment", "Job", "CronJob"}]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod a workload runs (a CronJob's through its job template)."""
    spec = workload["spec"]
    spec = spec["jobTemplate"]["spec"] if workload.get("kind") == "CronJob" else spec
    return dict(spec["template"]["spec"])


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


# --- facts from the code -------------------------------------------------------------------------


@cache
def setting_names() -> frozenset[str]:
    """Every environment variable name Settings reads (upper case)."""
    names: set[str] = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(name.upper())
    return frozenset(names)


def secret_setting_names() -> frozenset[str]:
    """Secret settings: every SecretStr field (all its variable names), and the store URLs that
    carry passwords."""
    names = {"DATABASE_URL", "REDIS_URL"}
    for name, info in Settings.model_fields.items():
        if "SecretStr" not in str(info.annotation):
            continue
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [name]
        names.update(str(choice).upper() for choice in choices)
    return frozenset(names)


def default_port(service: str) -> int:
    return int(Settings.model_fields[f"{service}_port"].default)


def _routes_in(path: Path) -> set[str]:
    """Paths of GET routes declared with ``@app.get("...")`` in a module."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr != "get" or not node.args:
            continue
        first = node.args[0]
        if (
            isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and first.value.startswith("/")
        ):
            found.add(first.value)
    return found


@cache
def health_routes() -> dict[str, frozenset[str]]:
    """The GET health routes each service really serves."""
    from aegis.health.views import router

    backend = frozenset(
        str(getattr(r, "path", "")) for r in router.routes if "GET" in getattr(r, "methods", set())
    )
    engine = frozenset(r for r in _routes_in(SRC / "engine" / "app.py") if "health" in r)
    executor = frozenset(r for r in _routes_in(SRC / "executor" / "app.py") if "health" in r)
    return {"backend": backend, "engine": engine, "executor": executor}


# --- probes --------------------------------------------------------------------------------------

_EXEC_URL = re.compile(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[^'\"\s]*)")


def probe_targets(container: dict[str, Any]) -> Iterator[tuple[str, int | str, str]]:
    """(probe kind, port, path) of every probe of a container; exec probes by their URL."""
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(kind)
        if probe is None:
            continue
        if "httpGet" in probe:
            port = probe["httpGet"]["port"]
            yield kind, ports.get(port, port), probe["httpGet"]["path"]
        elif "exec" in probe:
            command = " ".join(probe["exec"]["command"])
            match = _EXEC_URL.search(command)
            assert match, f"{kind} exec probe of {container['name']} calls no local URL"
            yield kind, int(match.group(1)), match.group(2)
        else:
            raise AssertionError(f"{kind} of {container['name']} is neither httpGet nor exec")
