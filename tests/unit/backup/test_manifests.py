"""The Kubernetes backup CronJob and restore Job are what the runbooks' commands expect, and the
commands they run are real `aegis backup` invocations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aegis.cli.main import run
from aegis.core.config import GENERATED_SECRETS

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
