"""helm/: the opt-in backup CronJob (backup.enabled) and its restore drill (backup.drill.enabled).

A Helm user gets the scheduled backups of k8s/jobs/backup-cronjob.yaml from the chart itself: the
same `aegis backup create --to URL`, the same ServiceAccount (the one Terraform's backup_role_arn
trusts), the same Secret for the encryption key, under the same security rules as every other
workload of the chart. Off by default; switched on without a destination, the render stops
naming the value. Rendered with the real helm binary, as in test_helm_chart.py.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from aegis.cli.main import run
from tests.support.promstack import RULES_FILE
from tests.unit.deploy import checks
from tests.unit.deploy.manifests import (
    HELM,
    JOBS,
    by_name,
    env_secret_refs,
    job_header_secrets,
    load_docs,
    pod_spec,
)
from tests.unit.deploy.test_helm_chart import (
    GKE_METADATA_SERVER,
    TERRAFORM_OUTPUTS,
    _lint_aws,
    _sets,
)
from tests.unit.deploy.test_helm_chart import _render as render_chart

DESTINATION = "s3://aegis-staging-123456789012/aegis/backups"
BACKUP_ROLE = "arn:aws:iam::123456789012:role/aegis-staging-db-backup"
ENABLED = {"backup.enabled": "true", "backup.destination": DESTINATION}
DRILL = {**ENABLED, "backup.drill.enabled": "true"}


def _render(*args: str) -> subprocess.CompletedProcess[str]:
    return render_chart(*_sets(TERRAFORM_OUTPUTS), *args)


def _objects(*args: str) -> list[dict[str, Any]]:
    result = _render(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _container(cronjob: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_spec(cronjob)["containers"]
    return dict(container)


def _kubectl_job() -> dict[str, Any]:
    (cronjob,) = [o for o in load_docs(JOBS / "backup-cronjob.yaml") if o["kind"] == "CronJob"]
    return cronjob


@pytest.mark.parametrize("values", [(), ("-f", str(HELM / "values.aws.yaml"))])
def test_backup_is_off_by_default(values: tuple[str, ...]) -> None:
    rendered = _objects(*values)
    assert not [o for o in rendered if o["kind"] == "CronJob"]
    assert "aegis-db-backup" not in by_name(rendered, "ServiceAccount")
    assert "db-backup-egress" not in by_name(rendered, "NetworkPolicy")


def test_enabled_backup_runs_the_command_of_the_kubectl_job_on_its_schedule() -> None:
    rendered = _objects(*_sets(ENABLED))
    cronjob = by_name(rendered, "CronJob")["aegis-db-backup"]
    kubectl = _kubectl_job()
    container = _container(cronjob)
    kubectl_env = {e["name"]: e.get("value") for e in _container(kubectl)["env"]}
    same = [str(a).replace("$(BACKUP_URL)", DESTINATION) for a in _container(kubectl)["args"]]
    assert container["args"] == same == ["backup", "create", "--to", DESTINATION]
    assert kubectl_env["BACKUP_URL"] != DESTINATION  # the comparison really substituted something
    assert container["image"] == "registry.example.com/aegis:1.2.3"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RETENTION_DAYS"] == "14"
    spec = cronjob["spec"]
    assert spec["schedule"] == kubectl["spec"]["schedule"]  # hourly: the documented RPO
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 5
    assert pod_spec(cronjob)["restartPolicy"] == "Never"


def test_backup_values_reach_the_cronjob() -> None:
    rendered = _objects(
        *_sets(
            {
                **ENABLED,
                "backup.schedule": "5 */6 * * *",
                "backup.retentionDays": "30",
                "backup.successfulJobsHistoryLimit": "1",
                "backup.failedJobsHistoryLimit": "2",
                "backup.resources.limits.memory": "2Gi",
            }
        )
    )
    cronjob = by_name(rendered, "CronJob")["aegis-db-backup"]
    container = _container(cronjob)
    assert cronjob["spec"]["schedule"] == "5 */6 * * *"
    assert {e["name"]: e.get("value") for e in container["env"]}["RETENTION_DAYS"] == "30"
    assert cronjob["spec"]["successfulJobsHistoryLimit"] == 1
    assert cronjob["spec"]["failedJobsHistoryLimit"] == 2
    assert container["resources"]["limits"]["memory"] == "2Gi"


def test_the_backup_reads_its_key_and_database_from_secrets_never_inline() -> None:
    """The encryption key comes from the Secret the kubectl job's header has the operator
    create (so one made for k8s/jobs serves the chart too); the chart never creates it, and
    DATABASE_URL is the one the chart's backend reads."""
    rendered = _objects(*_sets(ENABLED))
    cronjobs = [o for o in rendered if o["kind"] == "CronJob"]
    backend = [by_name(rendered, "Deployment")["backend"]]
    refs = env_secret_refs(cronjobs)
    assert refs["DATABASE_URL"] == env_secret_refs(backend)["DATABASE_URL"]
    key = refs["BACKUP_ENCRYPTION_KEY"]
    assert key == {("aegis-backup-secrets", "BACKUP_ENCRYPTION_KEY")}
    assert key <= job_header_secrets(JOBS / "backup-cronjob.yaml")
    assert {o["metadata"]["name"] for o in rendered if o["kind"] == "Secret"} == {"aegis-database"}
    for entry in _container(cronjobs[0])["env"]:
        if entry["name"] in {"BACKUP_ENCRYPTION_KEY", "DATABASE_URL"}:
            assert "value" not in entry, entry["name"]
    custom = _objects(
        *_sets(
            {
                **ENABLED,
                "backup.encryptionKey.secretName": "vault-backup",
                "backup.encryptionKey.secretKey": "key",
                "database.existingSecret": "db",
            }
        )
    )
    refs = env_secret_refs([o for o in custom if o["kind"] == "CronJob"])
    assert refs["BACKUP_ENCRYPTION_KEY"] == {("vault-backup", "key")}
    assert refs["DATABASE_URL"] == {("db", "DATABASE_URL")}


def test_the_backup_runs_under_the_charts_security_rules() -> None:
    """Non-root, read-only root filesystem, all capabilities dropped, resources set, no API
    token: the same checks as every Deployment and Job of the chart, on both CronJobs."""
    rendered = _objects(*_sets(DRILL))
    assert len([o for o in rendered if o["kind"] == "CronJob"]) == 2
    for check in checks.ALL_CHECKS:
        check(rendered)
    backend = pod_spec(by_name(rendered, "Deployment")["backend"])
    for cronjob in (o for o in rendered if o["kind"] == "CronJob"):
        pod = pod_spec(cronjob)
        assert pod["securityContext"] == backend["securityContext"]
        assert _container(cronjob)["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == pod_spec(_kubectl_job())["serviceAccountName"]


def test_the_backup_service_account_carries_the_irsa_role() -> None:
    """aegis-db-backup is the ServiceAccount Terraform's backup role trusts (as the kubectl
    job's): cloud.aws.backupRoleArn annotates it, like the backend's and the engine's."""
    rendered = _objects(
        "-f",
        str(HELM / "values.aws.yaml"),
        *_sets({**ENABLED, "cloud.aws.backupRoleArn": BACKUP_ROLE}),
        "--set",
        "backup.serviceAccount.annotations.example\\.com/team=db",
    )
    account = by_name(rendered, "ServiceAccount")["aegis-db-backup"]
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": BACKUP_ROLE,
        "example.com/team": "db",
    }
    assert account["automountServiceAccountToken"] is False
    plain = by_name(_objects(*_sets(ENABLED)), "ServiceAccount")["aegis-db-backup"]
    assert "annotations" not in plain["metadata"]


def test_the_backup_pods_may_reach_the_database_and_the_object_store() -> None:
    rendered = _objects(*_sets(DRILL))
    (policy,) = [
        p
        for p in rendered
        if p["kind"] == "NetworkPolicy"
        and p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": "db-backup"}
    ]
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert ports == {5432, 443}
    for cronjob in (o for o in rendered if o["kind"] == "CronJob"):
        labels = cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "db-backup"
    gcp = _objects(
        "-f",
        str(HELM / "values.gcp.yaml"),
        *_sets({**ENABLED, "cloud.gcp.backupServiceAccount": "bk@p.iam.gserviceaccount.com"}),
    )
    (policy,) = [p for p in gcp if p["metadata"]["name"] == "db-backup-egress"]
    reached = {
        (peer["ipBlock"]["cidr"], port["port"])
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
        for port in rule["ports"]
    }
    assert reached >= GKE_METADATA_SERVER
    account = by_name(gcp, "ServiceAccount")["aegis-db-backup"]
    assert account["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "bk@p.iam.gserviceaccount.com"
    }


def test_the_restore_drill_checks_the_newest_backup_on_its_own_schedule() -> None:
    assert "aegis-db-restore-drill" not in by_name(_objects(*_sets(ENABLED)), "CronJob")
    rendered = _objects(*_sets(DRILL))
    drill = by_name(rendered, "CronJob")["aegis-db-restore-drill"]
    assert _container(drill)["args"] == ["backup", "drill", "--from", DESTINATION]
    assert drill["spec"]["concurrencyPolicy"] == "Forbid"
    assert (
        drill["spec"]["schedule"]
        != by_name(rendered, "CronJob")["aegis-db-backup"]["spec"]["schedule"]
    )
    assert env_secret_refs([drill]) == env_secret_refs(
        [by_name(rendered, "CronJob")["aegis-db-backup"]]
    )


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"backup.enabled": "true"}, "backup.destination is required"),
        ({**ENABLED, "backup.destination": "/var/backups"}, "backup.destination"),
        ({**ENABLED, "backup.destination": "file:///backups"}, "backup.destination"),
        ({**ENABLED, "backup.schedule": ""}, "backup.schedule"),
        ({**ENABLED, "backup.encryptionKey.secretName": ""}, "backup.encryptionKey.secretName"),
        ({**ENABLED, "backup.encryptionKey.secretKey": ""}, "backup.encryptionKey.secretKey"),
        ({**ENABLED, "backup.retentionDays": "0"}, "backup.retentionDays"),
        ({**ENABLED, "backup.retentionDays": "two weeks"}, "backup.retentionDays"),
        ({"backup.drill.enabled": "true"}, "backup.drill.enabled needs backup.enabled"),
        ({**DRILL, "backup.drill.schedule": ""}, "backup.drill.schedule"),
    ],
)
def test_a_bad_backup_value_stops_the_render_naming_it(values: dict[str, str], named: str) -> None:
    result = _render(*_sets(values))
    assert result.returncode != 0
    assert named in result.stderr


def test_helm_lint_accepts_the_chart_with_backups_and_drill() -> None:
    result = _lint_aws({**TERRAFORM_OUTPUTS, **DRILL, "cloud.aws.backupRoleArn": BACKUP_ROLE})
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_aws_values_backup_lines_write_where_the_terraform_role_may() -> None:
    """values.aws.yaml's header gives the `--set` lines that switch backups on from Terraform's
    outputs. Rendered as written (outputs filled in), they back up under the prefix of the
    kubectl job's BACKUP_URL, the one backup_role_arn may write (test_terraform.py), as the
    ServiceAccount annotated with that role."""
    header = (HELM / "values.aws.yaml").read_text()
    setting = r"^#\s+--set (backup\.\w+|cloud\.aws\.backupRoleArn)=(.+?)(?: \\)?$"
    lines = re.findall(setting, header, re.MULTILINE)
    assert {key for key, _ in lines} == {
        "backup.enabled",
        "backup.destination",
        "cloud.aws.backupRoleArn",
    }
    outputs = {"bucket_name": "aegis-staging-123456789012", "backup_role_arn": BACKUP_ROLE}
    output = re.compile(r"\$\(terraform -chdir=\S+ output -raw (\w+)\)")
    values = {
        key: output.sub(lambda m: outputs[m.group(1)], value.strip('"')) for key, value in lines
    }
    rendered = _objects("-f", str(HELM / "values.aws.yaml"), *_sets(values))
    (destination,) = [
        arg
        for arg in _container(by_name(rendered, "CronJob")["aegis-db-backup"])["args"]
        if "://" in arg
    ]
    kubectl_url = next(
        e["value"] for e in _container(_kubectl_job())["env"] if e["name"] == "BACKUP_URL"
    )
    assert destination.startswith("s3://aegis-staging-123456789012/")
    assert destination.split("/", 3)[3] == kubectl_url.split("/", 3)[3]  # aegis/backups
    account = by_name(rendered, "ServiceAccount")["aegis-db-backup"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == BACKUP_ROLE


@pytest.mark.parametrize("name", ["aegis-db-backup", "aegis-db-restore-drill"])
def test_the_cronjobs_run_real_aegis_commands(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _container(by_name(_objects(*_sets(DRILL)), "CronJob")[name])["args"]
    assert run([*args, "--help"]) == 0  # an unknown command or option would exit 2
    assert re.search(rf"Usage: \S+ backup {args[1]} ", capsys.readouterr().out)


def test_the_backup_alerts_watch_the_cronjobs_the_chart_and_kubectl_make() -> None:
    """The backup alerts (k8s/prometheus/alert-rules.yaml) select their CronJob by name in
    kube-state-metrics' series: a CronJob renamed here or in k8s/jobs/ would leave them silent."""
    rules = {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load(RULES_FILE.read_text())["groups"]
        for rule in group["rules"]
    }
    watched = {
        name: set(re.findall(r'\b(?:owner_name|cronjob)="([^"]+)"', rules[name]))
        for name in ("AegisBackupJobFailed", "AegisBackupMissing", "AegisRestoreDrillFailed")
    }
    assert watched == {
        "AegisBackupJobFailed": {"aegis-db-backup"},
        "AegisBackupMissing": {"aegis-db-backup"},
        "AegisRestoreDrillFailed": {"aegis-db-restore-drill"},
    }
    chart = set(by_name(_objects(*_sets(DRILL)), "CronJob"))
    assert chart == {"aegis-db-backup", "aegis-db-restore-drill"}
    assert _kubectl_job()["metadata"]["name"] == "aegis-db-backup"
