"""observability/alertmanager/alertmanager.yml: valid for amtool, and each alert reaches its owners.

The owners come from the on-call runbook: critical pages the SRE on-call (PagerDuty), warning
goes to Slack #aegis-alerts (ops triage), safety alerts also to #aegis-safety and the Safety
on-call, AegisAuditWriteFailures and AegisRestoreDrillFailed (the audit chain may be incomplete or
tampered with) also to Compliance, and every alert to Aegis's own webhook.
Routing is checked with ``amtool config routes test --verify.receivers=...`` on the real file,
with the labels each rule in k8s/prometheus/alert-rules.yaml really carries.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.integration.observability.promql import alert_rules
from tests.support.promstack import ALERTMANAGER_CONFIG, REPO

CONFIG = str(ALERTMANAGER_CONFIG)
ALERTS_DOC = REPO / "docs" / "operations" / "alerts.md"

# Receivers in the order Alertmanager's routing tree reaches them.
EXPECTED_RECEIVERS = {
    "AegisSafetySpike": ["aegis-webhook", "safety-slack", "safety-pagerduty", "sre-pagerduty"],
    "AegisHighInferenceLatencyP95": ["aegis-webhook", "sre-pagerduty"],
    "AegisModelNotLoaded": ["aegis-webhook", "sre-pagerduty"],
    "AegisAuditWriteFailures": ["aegis-webhook", "compliance-slack", "sre-pagerduty"],
    "AegisApiErrorRateHigh": ["aegis-webhook", "sre-pagerduty"],
    "AegisServiceDown": ["aegis-webhook", "sre-pagerduty"],
    "AegisCanaryErrorRateHigh": ["aegis-webhook", "ops-slack"],
    "AegisCanaryClientErrorsHigh": ["aegis-webhook", "ops-slack"],
    "AegisCanaryLatencyHigh": ["aegis-webhook", "ops-slack"],
    "AegisApiLatencyP99High": ["aegis-webhook", "ops-slack"],
    "AegisRateLimitHitsHigh": ["aegis-webhook", "ops-slack"],
    "AegisExecutorActionFailures": ["aegis-webhook", "ops-slack"],
    "AegisBackupJobFailed": ["aegis-webhook", "ops-slack"],
    "AegisBackupMissing": ["aegis-webhook", "sre-pagerduty"],
    "AegisRestoreDrillFailed": ["aegis-webhook", "compliance-slack", "ops-slack"],
}
RULES = alert_rules()


def _route(
    amtool: str, labels: dict[str, str], verify: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [amtool, "config", "routes", "test", f"--config.file={CONFIG}"]
    if verify is not None:
        argv.append(f"--verify.receivers={','.join(verify)}")
    argv += [f"{k}={v}" for k, v in sorted(labels.items())]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)


def _receivers(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.strip().splitlines()[-1].split(",")


def _rule_labels(name: str) -> dict[str, str]:
    return {"alertname": name, **RULES[name]["labels"]}


def test_amtool_accepts_the_config(amtool: str) -> None:
    result = subprocess.run(
        [amtool, "check-config", CONFIG], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_rule_has_expected_owners() -> None:
    assert set(EXPECTED_RECEIVERS) == set(RULES)


@pytest.mark.parametrize("name", sorted(EXPECTED_RECEIVERS))
def test_alert_is_routed_to_its_owners(amtool: str, name: str) -> None:
    expected = EXPECTED_RECEIVERS[name]
    result = _route(amtool, _rule_labels(name), verify=expected)
    assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
    assert _receivers(result) == expected


def test_verify_receivers_rejects_a_wrong_expectation(amtool: str) -> None:
    # The check above has teeth: amtool exits non-zero when the receivers differ.
    result = _route(amtool, _rule_labels("AegisSafetySpike"), verify=["aegis-webhook", "ops-slack"])
    assert result.returncode != 0
    assert "did not match" in result.stdout


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"severity": "warning"}, ["aegis-webhook", "ops-slack"]),
        ({"severity": "critical"}, ["aegis-webhook", "sre-pagerduty"]),
        (
            {"severity": "critical", "category": "safety"},
            ["aegis-webhook", "safety-slack", "safety-pagerduty", "sre-pagerduty"],
        ),
        (
            {"severity": "warning", "category": "safety"},
            ["aegis-webhook", "safety-slack", "safety-pagerduty", "ops-slack"],
        ),
        ({"severity": "info"}, ["aegis-webhook", "ops-slack"]),
        ({}, ["aegis-webhook", "ops-slack"]),
    ],
    ids=["warning", "critical", "critical-safety", "warning-safety", "info", "no-severity"],
)
def test_any_alert_reaches_aegis_and_a_human(
    amtool: str, labels: dict[str, str], expected: list[str]
) -> None:
    result = _route(amtool, {"alertname": "AegisTestAlert", **labels}, verify=expected)
    assert result.returncode == 0, result.stdout + result.stderr


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in _walk(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [kv for i, v in enumerate(node) for kv in _walk(v, f"{path}[{i}]")]
    return [(path, node)]


def test_no_secret_is_written_in_the_config() -> None:
    doc = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    secret_keys = {
        "api_url", "slack_api_url", "routing_key", "service_key", "credentials", "password",
        "auth_password", "bearer_token", "auth_secret", "api_key", "token",
    }  # fmt: skip
    leaves = _walk(doc)
    inline = [path for path, _ in leaves if path.rsplit(".", 1)[-1] in secret_keys]
    assert inline == []
    files = [value for path, value in leaves if path.endswith("_file")]
    assert files and all(str(f).startswith("/etc/aegis/alertmanager/") for f in files)


def test_aegis_webhook_authenticates_with_a_bearer_token_from_a_file() -> None:
    doc = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    (receiver,) = [r for r in doc["receivers"] if r["name"] == "aegis-webhook"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:3000/api/v1/alerts/alertmanager"
    assert hook["http_config"]["authorization"]["type"] == "Bearer"
    assert hook["http_config"]["authorization"]["credentials_file"]
    assert hook["send_resolved"] is True


def test_the_alerts_doc_lists_the_same_receivers() -> None:
    rows = re.findall(
        r"^\| \[(Aegis\w+)\]\(#\w+\) \| (\w+) \| \w+ \| ([\w, -]+) \|$",
        ALERTS_DOC.read_text(),
        flags=re.MULTILINE,
    )
    documented = {name: receivers.split(", ") for name, _, receivers in rows}
    assert documented == EXPECTED_RECEIVERS
    for name, severity, _ in rows:
        assert RULES[name]["labels"]["severity"] == severity
