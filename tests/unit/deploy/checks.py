"""Checks every rendering of the Kubernetes objects must pass (Kustomize base and overlays, Helm).

Each function takes the list of objects and raises AssertionError naming what is wrong, so the
same rules hold for k8s/base, for `kubectl kustomize k8s/overlays/*` and for `helm template`.
"""

from __future__ import annotations

import ipaddress
import posixpath
from fnmatch import fnmatchcase
from typing import Any

from aegis.core.config import GENERATED_SECRETS, SERVICE_SECRETS
from tests.unit.deploy.manifests import (
    SERVICES,
    by_name,
    containers,
    default_port,
    health_routes,
    of_kind,
    pod_spec,
    probe_targets,
    secret_setting_names,
    setting_names,
    workloads,
)

Objects = list[dict[str, Any]]


def config_data(objects: Objects) -> dict[str, str]:
    """The merged data of the ConfigMaps the Deployments read with envFrom."""
    data: dict[str, str] = {}
    for cm in of_kind(objects, "ConfigMap"):
        data.update({k: str(v) for k, v in (cm.get("data") or {}).items()})
    return data


def check_deployments_exist(objects: Objects) -> None:
    assert set(by_name(objects, "Deployment")) >= set(SERVICES), "a service has no Deployment"


def check_probes_hit_real_health_routes(objects: Objects) -> None:
    routes = health_routes()
    for name, service in SERVICES.items():
        deployment = by_name(objects, "Deployment")[name]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        kinds = {kind for kind, _, _ in probe_targets(container)}
        assert {"livenessProbe", "readinessProbe"} <= kinds, f"{name} lacks a probe"
        ports = [p["containerPort"] for p in container["ports"]]
        assert ports == [default_port(service)], f"{name} listens on {ports}"
        for kind, port, path in probe_targets(container):
            assert port == default_port(service), f"{name} {kind} probes port {port}"
            assert path in routes[service], f"{name} {kind} probes {path}, not a health route"


def check_env_names_are_settings(objects: Objects) -> None:
    known = setting_names()
    for cm in of_kind(objects, "ConfigMap"):
        unknown = set(cm.get("data") or {}) - known
        assert not unknown, f"ConfigMap {cm['metadata']['name']} sets non-settings {unknown}"
    for workload in workloads(objects):
        for container in containers(workload):
            names = {e["name"] for e in container.get("env", [])}
            unknown = names - known
            assert not unknown, f"{workload['metadata']['name']} sets non-settings {unknown}"


def check_no_secret_inline(objects: Objects) -> None:
    secret = secret_setting_names()
    for cm in of_kind(objects, "ConfigMap"):
        leaked = set(cm.get("data") or {}) & secret
        assert not leaked, f"ConfigMap {cm['metadata']['name']} holds secrets {leaked}"
    for workload in workloads(objects):
        for container in pod_spec(workload)["containers"]:
            for entry in container.get("env", []):
                if entry["name"] in secret:
                    assert "value" not in entry, f"{entry['name']} is written inline"
                    assert "secretKeyRef" in entry.get("valueFrom", {}), (
                        f"{entry['name']} of {workload['metadata']['name']} is not from a Secret"
                    )
    assert not of_kind(objects, "Secret") or all(
        o["metadata"]["name"] == "aegis-database" for o in of_kind(objects, "Secret")
    ), "a rendering creates platform Secrets (they must come from k8s/secrets.yaml or ESO)"


def _service_of(container: dict[str, Any]) -> str:
    """The SERVICE_SECRETS key of a container's command: ``serve X`` is X, anything else a CLI."""
    args = [str(a) for a in container.get("args", [])]
    return args[1] if args[:1] == ["serve"] and len(args) > 1 else "cli"


def check_production_mode_can_start(objects: Objects) -> None:
    """AEGIS_MODE=production starts every workload: each gets the secrets its service demands
    and a database, and (least privilege) no platform secret its service does not use."""
    assert config_data(objects)["AEGIS_MODE"] == "production"
    platform = {s.upper() for s in GENERATED_SECRETS}
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        for container in pod_spec(workload)["containers"]:
            needed = {s.upper() for s in SERVICE_SECRETS[_service_of(container)]}
            from_secrets = [
                e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})
            ]
            mandatory = {
                e["name"]
                for e in from_secrets
                if not e["valueFrom"]["secretKeyRef"].get("optional")
            }
            missing = (needed | {"DATABASE_URL"}) - mandatory
            assert not missing, f"{name} would not start: no {missing}"
            held = {e["name"].removesuffix("_PREVIOUS") for e in from_secrets} & platform
            assert held <= needed, f"{name} holds secrets it does not use: {held - needed}"


def check_security_contexts(objects: Objects) -> None:
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["securityContext"]["runAsUser"] != 0, name
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in sc["capabilities"], name
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][part]), f"{name} {part}"
            mounted = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert {"/var/lib/aegis", "/tmp"} <= mounted, f"{name}: writable dirs not mounted"


def check_pdbs_hpas_and_services_point_at_deployments(objects: Objects) -> None:
    deployments = by_name(objects, "Deployment")

    def pod_labels(name: str) -> dict[str, str]:
        return dict(deployments[name]["spec"]["template"]["metadata"]["labels"])

    for name in SERVICES:
        pdbs = [
            p
            for p in of_kind(objects, "PodDisruptionBudget")
            if p["spec"]["selector"]["matchLabels"].items() <= pod_labels(name).items()
        ]
        assert pdbs, f"no PodDisruptionBudget covers {name}"
        services = [
            s
            for s in of_kind(objects, "Service")
            if s["spec"]["selector"] == {"app.kubernetes.io/name": name}
        ]
        assert services, f"no Service selects {name}"
        port_names = {p["name"] for c in containers(deployments[name]) for p in c["ports"]}
        for service in services:
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in port_names, f"Service {service['metadata']['name']}"
    hpas = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")
    }
    assert {"backend", "ai-engine"} <= hpas, "backend and ai-engine must autoscale"
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def _peers(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return list(rule.get("from", []))


def check_network_policies(objects: Objects) -> None:
    policies = of_kind(objects, "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny NetworkPolicy"

    def ingress_rules(app: str) -> list[dict[str, Any]]:
        return [
            rule
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": app}
            for rule in p["spec"].get("ingress", [])
        ]

    executor_rules = ingress_rules("executor")
    assert executor_rules, "nothing may reach the executor"
    backend_peer = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "backend"}}}
    for rule in executor_rules:
        assert [p["port"] for p in rule["ports"]] == [default_port("executor")]
        for peer in _peers(rule):
            # The backend, or the Prometheus pods of the monitoring namespace (scrape only).
            if peer == backend_peer:
                continue
            assert set(peer) == {"namespaceSelector", "podSelector"}, f"executor peer {peer}"
            assert "prometheus" in str(peer["podSelector"]), f"executor peer {peer}"
    assert any(backend_peer in _peers(r) for r in executor_rules)
    assert any(backend_peer in _peers(r) for r in ingress_rules("ai-engine"))
    for rule in ingress_rules("ai-engine"):
        assert [p["port"] for p in rule["ports"]] == [default_port("engine")]


def check_executor_rights_match_allowed_namespaces(objects: Objects) -> None:
    executor = by_name(objects, "Deployment")["executor"]
    account = executor["spec"]["template"]["spec"]["serviceAccountName"]
    assert account == "aegis-executor"
    allowed = {
        ns.strip()
        for ns in config_data(objects)["EXECUTOR_ALLOWED_NAMESPACES"].split(",")
        if ns.strip()
    }
    roles = {r["metadata"]["namespace"] for r in of_kind(objects, "Role")}
    bindings = {
        b["metadata"]["namespace"]
        for b in of_kind(objects, "RoleBinding")
        if any(s["name"] == account for s in b["subjects"])
    }
    # The executor matches namespaces with fnmatchcase: a plain name needs its Role, a glob is
    # covered by the Roles in the namespaces it matches, and no Role may lie outside them all.
    plain = {ns for ns in allowed if not any(c in ns for c in "*?[")}
    stray = {ns for ns in roles if not any(fnmatchcase(ns, p) for p in allowed)}
    assert roles == bindings, f"Roles {roles}, bindings {bindings}"
    assert plain <= roles and not stray, f"Roles {roles}, allowed {allowed}"
    assert not of_kind(objects, "ClusterRole"), "the executor must never get a ClusterRole"
    for name in ("backend", "ai-engine"):
        spec = by_name(objects, "Deployment")[name]["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False, f"{name} mounts an API token"


def _mounted_secret(deployment: dict[str, Any], path: str) -> str:
    """The Secret mounted at the folder of ``path`` in the deployment's container."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    folder = path if not posixpath.splitext(path)[1] else posixpath.dirname(path)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert folder in mounts, f"{deployment['metadata']['name']} does not mount {folder}"
    volumes = {v["name"]: v for v in pod["volumes"]}
    return str(volumes[mounts[folder]]["secret"]["secretName"])


def check_mounted_keys_match_settings(objects: Objects) -> dict[str, str]:
    """The key files the settings name are mounted from Secrets; returns {setting: secret}."""
    config = config_data(objects)
    deployments = by_name(objects, "Deployment")
    return {
        "AEGIS_TRUSTED_KEYS": _mounted_secret(
            deployments["ai-engine"], config["AEGIS_TRUSTED_KEYS"]
        ),
        "AUDIT_SIGNING_KEY_FILE": _mounted_secret(
            deployments["backend"], config["AUDIT_SIGNING_KEY_FILE"]
        ),
    }


def check_trusted_proxies_are_the_backends_and_well_formed(objects: Objects) -> None:
    """TRUSTED_PROXIES is set on the backend alone (the one service behind an ingress; never in
    the shared ConfigMap), and every entry is an address or a network as uvicorn reads them:
    uvicorn takes a malformed entry (a typo, a network with host bits set) for a host name that
    never matches, silently, and "*" for every peer."""
    assert "TRUSTED_PROXIES" not in config_data(objects), "TRUSTED_PROXIES in the ConfigMap"
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        for container in containers(workload):
            for entry in container.get("env", []):
                if entry["name"] != "TRUSTED_PROXIES":
                    continue
                assert name == "backend", f"{name} sets TRUSTED_PROXIES"
                assert "valueFrom" not in entry, "TRUSTED_PROXIES is a plain value"
                for part in filter(None, (p.strip() for p in entry.get("value", "").split(","))):
                    try:
                        (ipaddress.ip_network if "/" in part else ipaddress.ip_address)(part)
                    except ValueError:
                        raise AssertionError(f"TRUSTED_PROXIES: {part!r} is no address") from None


ALL_CHECKS = (
    check_deployments_exist,
    check_probes_hit_real_health_routes,
    check_env_names_are_settings,
    check_no_secret_inline,
    check_production_mode_can_start,
    check_security_contexts,
    check_pdbs_hpas_and_services_point_at_deployments,
    check_network_policies,
    check_executor_rights_match_allowed_namespaces,
    check_mounted_keys_match_settings,
    check_trusted_proxies_are_the_backends_and_well_formed,
)
