"""The Kubernetes backup CronJob and restore Job are what the runbooks' commands expect, and the
commands they run are real `aegis backup` invocations."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis.cli.main import run
from aegis.core.config import GENERATED_SECRETS
from tests.unit.deploy.manifests import env_secret_refs

JOBS = Path(__file__).resolve().parents[3] / "k8s" / "jobs"


def _docs(name: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in yaml.safe_load_all((JOBS / name).read_text())}


def _pod(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    job = doc["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else doc["spec"]
    pod: dict[str, Any] = job["template"]["spec"]
    return pod


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container["env"]}


def _args_with(container: dict[str, Any], values: dict[str, str]) -> list[str]:
    """The container's args with Kubernetes' $(VAR) references replaced."""
    return [re.sub(r"\$\((\w+)\)", lambda m: values[m[1]], a) for a in container["args"]]


def test_the_cronjob_is_the_one_the_runbooks_trigger() -> None:
    docs = _docs("backup-cronjob.yaml")
    cron = docs["CronJob"]
    # kubectl -n aegis create job --from=cronjob/aegis-db-backup aegis-db-backup-manual
    assert (cron["metadata"]["name"], cron["metadata"]["namespace"]) == ("aegis-db-backup", "aegis")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = _pod("CronJob", cron)
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    selector = docs["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]
    labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    env = _env(pod["containers"][0])
    assert {"DATABASE_URL", "BACKUP_ENCRYPTION_KEY", "BACKUP_URL", "RETENTION_DAYS"} <= set(env)
    assert not {s.upper() for s in GENERATED_SECRETS} & set(env)  # no platform secret


def test_the_restore_job_takes_artifact_uri() -> None:
    job = _docs("restore-db-job.yaml")["Job"]
    assert job["metadata"]["namespace"] == "aegis"
    assert job["spec"]["backoffLimit"] == 0
    container = _pod("Job", job)["containers"][0]
    assert "ARTIFACT_URI" in _env(container)
    assert "$(ARTIFACT_URI)" in container["args"]


@pytest.mark.parametrize(
    ("name", "kind"), [("backup-cronjob.yaml", "CronJob"), ("restore-db-job.yaml", "Job")]
)
def test_the_pods_are_locked_down(name: str, kind: str) -> None:
    pod = _pod(kind, _docs(name)[kind])
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize(
    ("name", "kind"), [("backup-cronjob.yaml", "CronJob"), ("restore-db-job.yaml", "Job")]
)
def test_the_jobs_run_real_aegis_commands(
    name: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    container = _pod(kind, _docs(name)[kind])["containers"][0]
    args = _args_with(container, {"BACKUP_URL": "s3://b/p", "ARTIFACT_URI": "s3://b/p/a"})
    assert run([*args, "--help"]) == 0  # unknown commands or options would exit 2
    assert re.search(rf"Usage: \S+ backup {args[1]} ", capsys.readouterr().out)


RUNBOOK = JOBS.parents[1] / "docs" / "operations" / "backup-restore.md"
HELM_SECRET = "{name: aegis-database, key: DATABASE_URL}"


def _with_namespace(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [{**d, "metadata": {**d["metadata"], "namespace": namespace}} for d in docs]


def _another_namespace_commands() -> list[str]:
    """The apply commands of the runbook's block for a namespace other than `aegis`."""
    blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", RUNBOOK.read_text(), re.DOTALL)
    (block,) = [b for b in blocks if re.search(r"^NS=", b, re.MULTILINE)]
    return [line for line in block.splitlines() if line.endswith("| kubectl apply -f -")]


@pytest.mark.parametrize("name", ["backup-cronjob.yaml", "restore-db-job.yaml"])
def test_the_runbooks_command_applies_the_jobs_in_another_namespace(name: str) -> None:
    """The files name namespace `aegis` (so a plain `kubectl apply -f` cannot land elsewhere, and
    `kubectl -n other apply -f` is refused); the runbook's command for another namespace rewrites
    every object's namespace, and nothing else, before `kubectl apply -f -`."""
    commands = [c for c in _another_namespace_commands() if f"k8s/jobs/{name}" in c]
    assert commands, f"no command applies {name} in another namespace"
    original = [d for d in yaml.safe_load_all((JOBS / name).read_text()) if d]
    assert {d["metadata"]["namespace"] for d in original} == {"aegis"}
    for command in commands:
        rewrite = command.removesuffix("| kubectl apply -f -")
        result = subprocess.run(
            ["bash", "-c", rewrite],
            cwd=JOBS.parents[1],
            env={**os.environ, "NS": "team-x"},
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        applied = [d for d in yaml.safe_load_all(result.stdout) if d]
        expected = _with_namespace(original, "team-x")
        if HELM_SECRET in command:  # the Helm install's DATABASE_URL Secret, as step 0 says
            expected = [
                d
                for d in yaml.safe_load_all(
                    (JOBS / name)
                    .read_text()
                    .replace("{name: aegis-backend-secrets, key: DATABASE_URL}", HELM_SECRET)
                )
                if d
            ]
            expected = _with_namespace(expected, "team-x")
            assert env_secret_refs(applied)["DATABASE_URL"] == {("aegis-database", "DATABASE_URL")}
        assert applied == expected
