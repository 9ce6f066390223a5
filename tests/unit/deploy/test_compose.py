"""backend/docker-compose.prod.yml (and deploy/compose/docker-compose.yml, which includes it):
every long-running service has a healthcheck, the Aegis containers set only real settings, and
no secret is written in the file."""

from __future__ import annotations

import re
from typing import Any

import yaml

from aegis.core.config import SERVICE_SECRETS
from tests.unit.deploy.manifests import (
    COMPOSE,
    COMPOSE_INCLUDE,
    REPO,
    default_port,
    health_routes,
    secret_setting_names,
    setting_names,
)

SPEC: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
SERVICES: dict[str, dict[str, Any]] = SPEC["services"]
AEGIS = {name: s for name, s in SERVICES.items() if s.get("build")}
# Variables of backend/.env that only Compose reads (interpolation), never Aegis.
COMPOSE_ONLY = {
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "AEGIS_IMAGE",
    "API_HOST_PORT",
    "CONSOLE_HOST_PORT",
    "ENGINE_HOST_PORT",
    "POSTGRES_HOST_PORT",
    "REDIS_HOST_PORT",
    "API_TRUSTED_PROXIES",
}
_INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def test_runbook_services_exist() -> None:
    assert {"postgres", "redis", "migrate", "api", "engine", "executor"} <= set(SERVICES)
    assert {"api", "engine", "executor", "migrate"} == set(AEGIS)


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        if service.get("restart") == "no":
            # A one-shot: the others wait for it to exit 0 instead.
            waiting = [
                other
                for other in SERVICES.values()
                if isinstance(other.get("depends_on"), dict)
                and other["depends_on"].get(name, {}).get("condition")
                == "service_completed_successfully"
            ]
            assert waiting, f"nothing waits for the one-shot {name}"
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"


def test_healthchecks_are_the_runbooks() -> None:
    assert SERVICES["postgres"]["healthcheck"]["test"] == [
        "CMD", "pg_isready", "-U", "aegis_user", "-d", "aegis_db",
    ]  # fmt: skip
    assert "redis-cli ping" in " ".join(SERVICES["redis"]["healthcheck"]["test"])
    routes = health_routes()
    for name, service in (("api", "backend"), ("engine", "engine"), ("executor", "executor")):
        test = " ".join(SERVICES[name]["healthcheck"]["test"])
        match = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", test)
        assert match, f"{name}: healthcheck calls no local URL"
        assert int(match.group(1)) == default_port(service)
        assert match.group(2) in routes[service]
    api = " ".join(SERVICES["api"]["healthcheck"]["test"])
    assert "/api/v1/health/ping" in api


def test_aegis_services_wait_for_stores_and_the_migration() -> None:
    assert SERVICES["migrate"]["command"] == ["db", "upgrade"]
    for name in ("api", "engine", "executor"):
        depends = AEGIS[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert AEGIS[name]["command"][0] == "serve"


def test_aegis_containers_set_only_settings_and_no_secret_inline() -> None:
    known = setting_names()
    secrets = secret_setting_names()
    for name, service in AEGIS.items():
        env = service["environment"]
        named = {k for k, v in env.items() if not (v == "" and k in COMPOSE_ONLY)}  # blanked
        assert named <= known, f"{name}: {named - known}"
        assert service["env_file"] == ".env"  # the runbook's one file
        assert env["AEGIS_MODE"] == "production"
        for key, value in env.items():
            if key in secrets and value != "":  # "" blanks it (the next test)
                assert "${" in str(value), f"{name}: {key} is written inline"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]


def test_each_aegis_container_keeps_only_the_secrets_its_service_uses() -> None:
    # Every platform secret reaches a container through .env unless its environment blanks it
    # (an empty secret is no secret: tests/unit/core/test_config.py).
    platform = secret_setting_names() - {"DATABASE_URL", "REDIS_URL"}
    for name, service in AEGIS.items():
        command = service["command"]
        role = command[1] if command[0] == "serve" else "cli"
        used = {s.upper() for s in SERVICE_SECRETS[role]}
        used |= {f"{s}_PREVIOUS" for s in used} & platform  # rotation keeps the old one too
        if role == "backend":
            used.add("BACKUP_ENCRYPTION_KEY")  # backups run in the api container
        blanked = {k for k, v in service["environment"].items() if v == ""}
        blanked -= {"REDIS_URL", "REDIS_PASSWORD"}  # the store's, not the platform's (below)
        assert blanked <= platform, f"{name} blanks a non-secret: {blanked - platform}"
        assert platform - blanked == used, f"{name} holds {sorted(platform - blanked - used)}"


def test_only_the_services_that_use_redis_hold_its_password() -> None:
    # Redis holds the backend's rate limits and the executor's nonces (a replayed signed request
    # is refused by them); the engine and the migration never use it. REDIS_PASSWORD reaches
    # every container from backend/.env (env_file) unless its environment blanks it.
    redis_url = SERVICES["api"]["environment"]["REDIS_URL"]
    assert "${REDIS_PASSWORD" in redis_url
    for name, service in AEGIS.items():
        env = service["environment"]
        if name in {"api", "executor"}:
            assert env["REDIS_URL"] == redis_url, name
            assert "REDIS_PASSWORD" not in env, name
        else:
            assert env.get("REDIS_URL") == "", f"{name} holds REDIS_URL"
            assert env.get("REDIS_PASSWORD") == "", f"{name} holds REDIS_PASSWORD"


def test_every_interpolated_secret_comes_from_the_env_file_and_is_required() -> None:
    text = COMPOSE.read_text()
    for match in re.finditer(r"\$\{((?:POSTGRES|REDIS)_PASSWORD)([^}]*)\}", text):
        assert match.group(2).startswith(":?"), f"{match.group(1)} may silently be empty"


def test_env_example_names_only_settings_or_compose_variables() -> None:
    example = (REPO / "backend" / ".env.example").read_text()
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    names |= set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", example))
    unknown = names - setting_names() - COMPOSE_ONLY
    assert not unknown, unknown
    for line in example.splitlines():
        if "=" in line and not line.startswith("#"):
            assert line.endswith("="), f"backend/.env.example holds a value: {line}"
    interpolated = set(_INTERPOLATION.findall(COMPOSE.read_text()))
    assert interpolated <= setting_names() | COMPOSE_ONLY, interpolated


def test_deploy_compose_file_includes_the_runbook_file() -> None:
    spec = yaml.safe_load(COMPOSE_INCLUDE.read_text())
    (entry,) = spec["include"]
    assert (COMPOSE_INCLUDE.parent / entry["path"]).resolve() == COMPOSE.resolve()


def test_only_loopback_ports_are_published() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
    assert "ports" not in SERVICES["executor"], "only the backend may reach the executor"


def test_only_the_api_believes_a_proxy_and_only_when_one_is_named() -> None:
    # TRUSTED_PROXIES itself in backend/.env would reach every container through env_file.
    assert AEGIS["api"]["environment"]["TRUSTED_PROXIES"] == "${API_TRUSTED_PROXIES:-}"
    for name, service in AEGIS.items():
        if name != "api":
            assert "TRUSTED_PROXIES" not in service["environment"], name
