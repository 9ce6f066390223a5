"""The Dockerfile builds the locked runtime set as a non-root image running `aegis`; the GitHub
workflows run the commands the runbooks name, with OIDC and no injectable inputs in scripts."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml

from tests.unit.deploy.manifests import REPO, WORKFLOWS

DOCKERFILE = (REPO / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    return re.findall(rf"^{name}\s+(.+)$", DOCKERFILE, re.MULTILINE)


def test_dockerfile_is_multi_stage_from_the_lock_file() -> None:
    assert len(_instructions("FROM")) >= 2
    assert "uv sync --frozen --no-dev" in DOCKERFILE
    assert any("uv.lock" in c for c in _instructions("COPY"))
    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert "uv " not in runtime.replace("uv.lock", ""), "uv must not reach the runtime stage"


def test_image_runs_aegis_as_a_numeric_non_root_user() -> None:
    (user,) = _instructions("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    (entrypoint,) = _instructions("ENTRYPOINT")
    assert entrypoint.strip() == '["aegis"]'
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "aegis" in scripts
    assert str(uid) in (REPO / "k8s" / "base" / "backend.yaml").read_text()


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".env", "**/.env", ".venv", ".aegis", ".git", "**/*.key"):
        assert entry in ignored


def _workflow(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return dict(doc)


def _runs(doc: dict[str, Any]) -> list[str]:
    return [step.get("run", "") for job in doc["jobs"].values() for step in job["steps"]]


def test_ci_runs_make_test() -> None:
    assert any(r.strip() == "make test" for r in _runs(_workflow("ci.yml")))


def test_sdk_scan_runs_the_scanner_strictly() -> None:
    runs = " ".join(_runs(_workflow("sdk-scan.yml")))
    assert "scripts/scan_cloud_sdk_usage.py --strict" in runs


def test_verifier_assumes_a_role_over_oidc_and_runs_the_verifier() -> None:
    doc = _workflow("verify-model-signatures-aws-oidc.yml")
    assert doc["permissions"]["id-token"] == "write"
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    assume = [s for s in steps if str(s.get("uses", "")).startswith("aws-actions/configure-aws")]
    assert assume and "role-to-assume" in assume[0]["with"]
    assert "aws-access-key-id" not in assume[0]["with"], "no stored AWS keys"
    runs = " ".join(_runs(doc))
    assert "aws s3 cp" in runs
    assert "scripts/verify_model_signatures.py" in runs


def test_verifier_runs_on_pull_requests_from_this_repository_only() -> None:
    """Runbook 002: the CI verifier cosign-verifies staging artifacts on PRs. A fork's pull
    request gets no OIDC token or secrets, so it is skipped rather than failed; so is every pull
    request before the staging bucket is configured."""
    doc = _workflow("verify-model-signatures-aws-oidc.yml")
    assert "pull_request" in doc["on"]
    (job,) = doc["jobs"].values()
    condition = " ".join(job["if"].split())
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert "vars.AEGIS_STAGING_BUCKET != ''" in condition
    assert "github.event_name != 'pull_request'" in condition
    # A pull request has no inputs: the archive key falls back to a repository variable, then
    # to the example model's key.
    key = job["env"]["ARCHIVE_KEY"]
    assert "inputs.archive_key ||" in key and "vars.AEGIS_VERIFY_ARCHIVE_KEY" in key
    assert key.rstrip(" }").endswith("'model-archives/example/0.1/model.tar.gz'")


def test_helm_deploy_is_dispatched_with_an_image_tag() -> None:
    doc = _workflow("helm-deploy-aws.yml")
    assert "image_tag" in doc["on"]["workflow_dispatch"]["inputs"]
    runs = " ".join(_runs(doc))
    assert "helm upgrade --install aegis ./helm -n aegis --create-namespace" in runs
    assert "-f helm/values.aws.yaml" in runs
    assert 'image.tag="$IMAGE_TAG"' in runs


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_no_workflow_expands_inputs_inside_a_script(name: str) -> None:
    for run in _runs(_workflow(name)):
        assert "${{ inputs." not in run and "${{ github.event" not in run, (
            f"{name}: pass inputs through env, not into the script text"
        )
