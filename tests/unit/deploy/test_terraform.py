"""infra/terraform: the AWS overlay and its modules are consistent HCL.

No Terraform provider can be downloaded here, so `terraform validate` is not part of the suite;
instead every `var.X` is declared, every declared variable is used, every `local.X` is defined,
every module call passes only (and all required) variables of its module and reads only its
outputs, and the runbook's outputs exist. `terraform fmt -check` (which parses every file) runs
with the terraform binary on PATH: without it that test skips, and under CI=true it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.unit.deploy.manifests import K8S, TERRAFORM, load_docs

OVERLAY = TERRAFORM / "overlays" / "aws"
MODULE_DIRS = sorted(p for p in (TERRAFORM / "modules").iterdir() if p.is_dir())
ALL_DIRS = [OVERLAY, *MODULE_DIRS]
_BLOCK = re.compile(r'^(variable|output|module|locals)\b\s*(?:"([^"]+)")?\s*\{', re.MULTILINE)
_OUTPUT_USE = re.compile(r"\bterraform\b[^\n]*?\boutput\s+(?:-raw\s+)?([a-z_]+)")
_META_ARGS = {"source", "count", "for_each", "providers", "depends_on", "version"}


def _text(directory: Path) -> str:
    files = sorted(directory.glob("*.tf"))
    assert files, f"no .tf files in {directory}"
    return "\n".join(f.read_text() for f in files)


def _body(text: str, start: int) -> str:
    """The text between the brace at ``start`` and its matching closing brace."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    raise AssertionError("unbalanced braces")


def _blocks(text: str, kind: str) -> dict[str, str]:
    found = {}
    for match in _BLOCK.finditer(text):
        if match.group(1) == kind:
            found[match.group(2) or f"_{match.start()}"] = _body(text, match.end() - 1)
    return found


def _top_level_attributes(body: str) -> set[str]:
    names, depth = set(), 0
    for line in body.splitlines():
        stripped = line.strip()
        if depth == 0:
            match = re.match(r"([a-z_][a-z0-9_]*)\s*=", stripped)
            if match:
                names.add(match.group(1))
        depth += line.count("{") + line.count("[") - line.count("}") - line.count("]")
    return names


def _required_variables(directory: Path) -> set[str]:
    return {
        name
        for name, body in _blocks(_text(directory), "variable").items()
        if "default" not in _top_level_attributes(body)
    }


@pytest.mark.parametrize("directory", ALL_DIRS, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_variable_referenced_is_declared_and_every_declared_one_used(
    directory: Path,
) -> None:
    text = _text(directory)
    declared = set(_blocks(text, "variable"))
    referenced = set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", text))
    assert referenced <= declared, f"undeclared: {referenced - declared}"
    assert declared <= referenced, f"declared but unused: {declared - referenced}"
    for name, body in _blocks(text, "variable").items():
        assert "description" in _top_level_attributes(body), f"variable {name} has no description"


@pytest.mark.parametrize("directory", ALL_DIRS, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_local_referenced_is_defined(directory: Path) -> None:
    text = _text(directory)
    defined = set().union(*(_top_level_attributes(b) for b in _blocks(text, "locals").values()))
    referenced = set(re.findall(r"\blocal\.([A-Za-z_][A-Za-z0-9_]*)", text))
    assert referenced <= defined, f"undefined locals: {referenced - defined}"


@pytest.mark.parametrize("directory", ALL_DIRS, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_module_calls_match_the_modules(directory: Path) -> None:
    text = _text(directory)
    for name, body in _blocks(text, "module").items():
        source = re.search(r'source\s*=\s*"([^"]+)"', body)
        assert source, f"module {name} has no source"
        module_dir = (directory / source.group(1)).resolve()
        assert module_dir.is_dir(), f"module {name}: {source.group(1)} does not exist"
        module_text = _text(module_dir)
        variables = set(_blocks(module_text, "variable"))
        passed = _top_level_attributes(body) - _META_ARGS
        assert passed <= variables, f"module {name} passes unknown {passed - variables}"
        missing = _required_variables(module_dir) - passed
        assert not missing, f"module {name} does not pass required {missing}"
        outputs = set(_blocks(module_text, "output"))
        read = set(re.findall(rf"\bmodule\.{name}(?:\[\*\]|\[\d+\])?\.(\w+)", text))
        assert read <= outputs, f"module.{name} has no output {read - outputs}"


def test_overlay_outputs_are_the_runbooks() -> None:
    outputs = _blocks(_text(OVERLAY), "output")
    assert {"bucket_name", "database_url"} <= set(outputs)
    assert re.search(r"sensitive\s*=\s*true", outputs["database_url"])
    variables = _blocks(_text(OVERLAY), "variable")
    assert "db_password" in _required_variables(OVERLAY)
    assert re.search(r"sensitive\s*=\s*true", variables["db_password"])


def test_bucket_is_versioned_kms_encrypted_and_never_public() -> None:
    text = _text(TERRAFORM / "modules" / "object_store")
    assert re.search(r'status\s*=\s*"Enabled"', text)
    assert re.search(r'sse_algorithm\s*=\s*"aws:kms"', text)
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                 "restrict_public_buckets"):  # fmt: skip
        assert re.search(rf"{flag}\s*=\s*true", text), flag


def test_database_is_encrypted_and_not_public() -> None:
    text = _text(TERRAFORM / "modules" / "postgres")
    assert re.search(r"storage_encrypted\s*=\s*true", text)
    assert re.search(r"publicly_accessible\s*=\s*false", text)


def test_irsa_policies_grant_no_wildcard_actions() -> None:
    text = _text(OVERLAY) + _text(TERRAFORM / "modules" / "github_oidc_role")
    for actions in re.findall(r"actions\s*=\s*\[([^\]]*)\]", text):
        for action in re.findall(r'"([^"]+)"', actions):
            assert "*" not in action, f"wildcard action {action}"
    # Only the TLS-only deny statement of the bucket policy may name s3:* (it denies).
    bucket = _text(TERRAFORM / "modules" / "object_store")
    assert 'effect  = "Deny"' in bucket


def test_engine_role_reads_the_model_archives_ci_verifies() -> None:
    """Runbook 001 step 8 uploads to s3://BUCKET/model-archives/..., CI verifies it there, and
    the engine must then load it from there: its read-only role covers model_archive_prefix."""
    text = _text(OVERLAY)
    start = re.search(r'data "aws_iam_policy_document" "engine" \{', text)
    assert start is not None
    engine = _body(text, start.end() - 1)
    read = next(s for s in re.split(r"\bstatement\s*\{", engine) if '"s3:GetObject"' in s)
    assert "/${var.model_archive_prefix}*" in read
    listed = next(s for s in re.split(r"\bstatement\s*\{", engine) if '"s3:ListBucket"' in s)
    assert '"${var.model_archive_prefix}*"' in listed
    verifier = _blocks(text, "module")["verifier_role"]
    assert re.search(r"read_prefix\s*=\s*var\.model_archive_prefix", verifier)


def test_terraform_fmt_accepts_every_file() -> None:
    terraform = shutil.which("terraform")
    require(terraform is not None, "terraform is not installed: fmt not run")
    assert terraform is not None
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _policy_document(text: str, name: str) -> str:
    start = re.search(rf'data "aws_iam_policy_document" "{name}" \{{', text)
    assert start is not None, f"no policy document {name}"
    return _body(text, start.end() - 1)


def test_the_backup_jobs_service_account_gets_an_irsa_role_on_the_backup_prefix() -> None:
    """k8s/jobs/ backs up to and restores from s3://BUCKET/<object_prefix>/backups as the
    ServiceAccount aegis-db-backup. Like the backend and the engine it gets an IRSA role (no
    static keys in the cluster), allowed only that prefix: put, get, list, and delete for
    pruning."""
    jobs = load_docs(K8S / "jobs" / "backup-cronjob.yaml")
    jobs += load_docs(K8S / "jobs" / "restore-db-job.yaml")
    pods = [
        (o["spec"].get("jobTemplate", o)["spec"]["template"]["spec"])
        for o in jobs
        if o["kind"] in {"CronJob", "Job"}
    ]
    (account,) = {pod["serviceAccountName"] for pod in pods}
    (cronjob,) = [o for o in jobs if o["kind"] == "CronJob"]
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    backup_url = next(e["value"] for e in container["env"] if e["name"] == "BACKUP_URL")
    backup_path = backup_url.split("://", 1)[1].split("/", 1)[1]

    text = _text(OVERLAY)
    roles = [
        (name, body)
        for name, body in _blocks(text, "module").items()
        if re.search(rf'service_account\s*=\s*"{account}"', body)
    ]
    assert len(roles) == 1, f"no IRSA role for ServiceAccount {account}"
    ((name, body),) = roles
    assert "../../modules/irsa_role" in body
    assert re.search(r"count\s*=\s*var\.eks_oidc_provider_arn == null \? 0 : 1", body)
    policy = re.search(r"policy_json\s*=\s*data\.aws_iam_policy_document\.(\w+)\.json", body)
    assert policy is not None
    document = _policy_document(text, policy.group(1))
    object_prefix = re.search(
        r'default\s*=\s*"([^"]+)"', _blocks(text, "variable")["object_prefix"]
    )
    assert object_prefix is not None
    prefix = re.search(r'backup_prefix\s*=\s*"\$\{local\.object_prefix\}/([^"]+)"', text)
    assert prefix is not None, "no local backup_prefix under the object prefix"
    assert f"{object_prefix.group(1)}/{prefix.group(1)}" == backup_path
    statements = re.split(r"\bstatement\s*\{", document)[1:]
    objects = next(s for s in statements if '"s3:PutObject"' in s)
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert f'"{action}"' in objects, action
    assert '"${module.object_store.bucket_arn}/${local.backup_prefix}/*"' in objects
    listed = next(s for s in statements if '"s3:ListBucket"' in s)
    assert '"${local.backup_prefix}/*"' in listed
    keys = next(s for s in statements if '"kms:GenerateDataKey"' in s)
    assert '"kms:Decrypt"' in keys
    output = _blocks(text, "output")["backup_role_arn"]
    assert f"module.{name}[*].role_arn" in output


def test_every_terraform_output_the_deploy_files_name_exists() -> None:
    """The runbooks and manifests pass Terraform outputs on by name (`output -raw NAME`)."""
    outputs = set(_blocks(_text(OVERLAY), "output"))
    named: dict[str, set[str]] = {}
    repo = TERRAFORM.parents[1]
    files = [*(repo / "docs").rglob("*.md"), *K8S.rglob("*.yaml"), *(repo / "helm").rglob("*")]
    for path in files:
        if path.is_file():
            for name in _OUTPUT_USE.findall(path.read_text()):
                named.setdefault(name, set()).add(str(path.relative_to(repo)))
    assert "backup_role_arn" in named, "the backup jobs' IRSA annotation is not documented"
    unknown = {name: where for name, where in named.items() if name not in outputs}
    assert not unknown, f"not outputs of {OVERLAY.name}: {unknown}"


def _variable_block(path: Path, name: str) -> str:
    text = path.read_text()
    start = re.search(rf'^variable "{name}" \{{', text, re.MULTILINE)
    assert start is not None, f"no variable {name} in {path}"
    return text[start.start() : start.end()] + _body(text, start.end() - 1) + "}\n"


def _plan_through_module(
    tmp_path: Path, module: str, argument: str, variable: str, value: str
) -> subprocess.CompletedProcess[str]:
    """`terraform plan` of the overlay's variable handed to a module's argument, as the overlay
    does, with both variable blocks copied verbatim: their validation rules run as in a real
    plan, and with no provider in the copy nothing is downloaded."""
    terraform = shutil.which("terraform")
    require(terraform is not None, "terraform is not installed: validation not run")
    assert terraform is not None
    call = _blocks(_text(OVERLAY), "module")[module]
    assert re.search(rf"^\s*{argument}\s*=\s*var\.{variable}$", call, re.MULTILINE)
    copy = tmp_path / module
    copy.mkdir()
    (copy / "variables.tf").write_text(
        _variable_block(TERRAFORM / "modules" / module / "variables.tf", argument)
    )
    (tmp_path / "main.tf").write_text(
        _variable_block(OVERLAY / "variables.tf", variable)
        + f'module "{module}" {{\n  source = "./{module}"\n  {argument} = var.{variable}\n}}\n'
    )
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_DATA_DIR": str(tmp_path / ".terraform")}
    commands = [
        ["init", "-backend=false", "-input=false", "-no-color"],
        ["plan", "-input=false", "-no-color", "-var", f"{variable}={value}"],
    ]
    for args in commands:
        result = subprocess.run(
            [terraform, *args],
            cwd=tmp_path,
            env=env,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            break
    return result


def _plan_with_db_password(tmp_path: Path, password: str) -> subprocess.CompletedProcess[str]:
    return _plan_through_module(tmp_path, "postgres", "password", "db_password", password)


@pytest.mark.parametrize(
    ("password", "named"),
    [
        ("short-Pw-1", "at least 16"),
        ("x" * 129, "at most 128"),
        ("k3Vq9-ZpL2/wR8tN", "/"),  # base64 output: RDS refuses it at apply, mid-way
        ("k3Vq9-ZpL2@wR8tN", "@"),
        ('k3Vq9-ZpL2"wR8tN', '"'),
        ("k3Vq9 ZpL2 wR8tN", "space"),
        ("k3Vq9-ZpL2-wR8tNé", "ASCII"),
        ("REPLACE_ME-REPLACE_ME", "placeholder"),
        ("changeme-changeme", "placeholder"),
        ("abababababababababab", "distinct"),
    ],
)
def test_a_db_password_rds_or_aegis_would_refuse_stops_the_plan(
    tmp_path: Path, password: str, named: str
) -> None:
    result = _plan_with_db_password(tmp_path, password)
    assert result.returncode != 0
    assert "db_password" in result.stderr and named in result.stderr, result.stderr
    assert password not in result.stdout + result.stderr  # the secret is never echoed


@pytest.mark.parametrize(
    "password",
    ["0f3a9c5e7b1d2468ace0b9d7", "k3Vq9-ZpL2_wR8tN+a=b!c#d$e%f&g*(h)", "x" * 120 + "12345678"],
)
def test_a_strong_db_password_passes_the_plan(tmp_path: Path, password: str) -> None:
    result = _plan_with_db_password(tmp_path, password)
    assert result.returncode == 0, result.stderr


def test_noncurrent_versions_expire_after_a_configurable_number_of_days() -> None:
    """Pruned backups and overwritten objects stay as noncurrent versions (the bucket is
    versioned and no role may delete a version): the bucket's lifecycle rule, not a role,
    expires them, after the overlay's noncurrent_version_retention_days, and removes the delete
    markers left with no version behind them."""
    bucket = _text(TERRAFORM / "modules" / "object_store")
    start = re.search(r'resource "aws_s3_bucket_lifecycle_configuration" "this" \{', bucket)
    assert start is not None, "no lifecycle configuration on the bucket"
    lifecycle = _body(bucket, start.end() - 1)
    assert re.search(r'status\s*=\s*"Enabled"', lifecycle)
    expiration = re.search(r"noncurrent_version_expiration\s*\{([^}]*)\}", lifecycle)
    assert expiration is not None
    assert re.search(
        r"noncurrent_days\s*=\s*var\.noncurrent_version_retention_days", expiration.group(1)
    )
    assert re.search(r"expired_object_delete_marker\s*=\s*true", lifecycle)
    overlay = _blocks(_text(OVERLAY), "variable")["noncurrent_version_retention_days"]
    assert re.search(r"type\s*=\s*number", overlay)
    assert re.search(r"nullable\s*=\s*false", overlay)
    assert "validation" in overlay
    call = _blocks(_text(OVERLAY), "module")["object_store"]
    assert re.search(
        r"noncurrent_version_retention_days\s*=\s*var\.noncurrent_version_retention_days", call
    )
    policies = _text(OVERLAY) + _text(TERRAFORM / "modules" / "github_oidc_role")
    assert "s3:DeleteObjectVersion" not in policies.replace(
        "DeleteObjectVersion is not granted", ""
    )
    docs = TERRAFORM.parents[1] / "docs" / "operations"
    for doc in ("deploy.md", "backup-restore.md"):
        assert "noncurrent_version_retention_days" in (docs / doc).read_text(), doc


@pytest.mark.parametrize(
    ("days", "named"),
    [("0", "at least 1"), ("-3", "at least 1"), ("1.5", "whole number")],
)
def test_a_noncurrent_retention_s3_would_refuse_stops_the_plan(
    tmp_path: Path, days: str, named: str
) -> None:
    result = _plan_through_module(
        tmp_path,
        "object_store",
        "noncurrent_version_retention_days",
        "noncurrent_version_retention_days",
        days,
    )
    assert result.returncode != 0
    assert "noncurrent_version_retention_days" in result.stderr, result.stderr
    assert named in result.stderr, result.stderr


@pytest.mark.parametrize("days", ["1", "90", "400"])
def test_a_whole_number_of_days_passes_the_plan(tmp_path: Path, days: str) -> None:
    result = _plan_through_module(
        tmp_path,
        "object_store",
        "noncurrent_version_retention_days",
        "noncurrent_version_retention_days",
        days,
    )
    assert result.returncode == 0, result.stderr
