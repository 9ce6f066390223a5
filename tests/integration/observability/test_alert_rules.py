"""k8s/prometheus/alert-rules.yaml: valid for promtool, unit-tested, labelled for routing.

The rule behaviour itself (fires on the series that should fire it, silent on the others, one
evaluation before and after ``for:``) is in the promtool unit tests, k8s/prometheus/tests/*.yaml;
these tests run them, check that they cover every alert that way, and check that they would
notice a broken rule (mutation: a shorter ``for:``, an expression that never fires).
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.observability.promql import alert_rules
from tests.support.promstack import PROMETHEUS_CONFIG, REPO, RULE_TESTS_DIR, RULES_FILE

ALERTS_DOC = REPO / "docs" / "operations" / "alerts.md"
REQUIRED_ALERTS = {
    "AegisSafetySpike",
    "AegisHighInferenceLatencyP95",
    "AegisModelNotLoaded",
    "AegisAuditWriteFailures",
    "AegisCanaryErrorRateHigh",
    "AegisCanaryClientErrorsHigh",
    "AegisCanaryLatencyHigh",
    "AegisApiErrorRateHigh",
    "AegisApiLatencyP99High",
    "AegisRateLimitHitsHigh",
    "AegisExecutorActionFailures",
    "AegisBackupJobFailed",
    "AegisBackupMissing",
    "AegisRestoreDrillFailed",
}
# Primary owner of each alert, from the on-call runbook (team label).
OWNER_TEAM = {
    "AegisSafetySpike": "safety",
    "AegisHighInferenceLatencyP95": "sre",
    "AegisModelNotLoaded": "sre",
    "AegisAuditWriteFailures": "sre",
    "AegisApiErrorRateHigh": "sre",
    "AegisServiceDown": "sre",
    "AegisCanaryErrorRateHigh": "ops",
    "AegisCanaryClientErrorsHigh": "ops",
    "AegisCanaryLatencyHigh": "ops",
    "AegisApiLatencyP99High": "ops",
    "AegisRateLimitHitsHigh": "ops",
    "AegisExecutorActionFailures": "ops",
    "AegisBackupJobFailed": "ops",
    "AegisBackupMissing": "sre",
    "AegisRestoreDrillFailed": "ops",
}
RULES = alert_rules()


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120, cwd=cwd)


def _duration_minutes(text: str) -> int:
    match = re.fullmatch(r"(\d+)m", text)
    assert match, f"durations in the rules and tests are whole minutes, got {text!r}"
    return int(match.group(1))


def _test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yaml"))


@functools.cache
def _load_tests(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def test_promtool_accepts_the_rules_file(promtool: str) -> None:
    result = _run([promtool, "check", "rules", str(RULES_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in result.stdout


def test_prometheus_config_loads_the_rules_file(promtool: str) -> None:
    result = _run([promtool, "check", "config", str(PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    assert f"Checking {RULES_FILE.resolve()}" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    # The same command the docs give: promtool test rules k8s/prometheus/tests/*.yaml
    files = [str(p.relative_to(REPO)) for p in _test_files()]
    assert files, "no promtool unit tests in k8s/prometheus/tests/"
    result = _run([promtool, "test", "rules", *files], cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def test_every_alert_the_runbooks_name_is_defined() -> None:
    assert set(RULES) >= REQUIRED_ALERTS, sorted(REQUIRED_ALERTS - set(RULES))


@pytest.mark.parametrize("name", sorted(RULES))
def test_alert_carries_routing_labels_and_annotations(name: str) -> None:
    rule = RULES[name]
    labels, annotations = rule["labels"], rule["annotations"]
    assert labels["severity"] in {"critical", "warning"}
    assert labels["team"] == OWNER_TEAM[name]
    assert labels["component"]
    assert {"summary", "description", "owners", "runbook_url"} <= set(annotations)
    assert annotations["runbook_url"] == f"docs/operations/alerts.md#{name.lower()}"
    assert _duration_minutes(rule["for"]) > 0


def test_safety_alerts_carry_the_safety_category() -> None:
    safety = {name for name, rule in RULES.items() if rule["labels"]["team"] == "safety"}
    assert safety == {"AegisSafetySpike"}
    for name in safety:
        assert RULES[name]["labels"]["category"] == "safety"
    others = {name for name, rule in RULES.items() if rule["labels"].get("category") == "safety"}
    assert others == safety


@pytest.mark.parametrize("name", sorted(RULES))
def test_runbook_url_points_at_a_section_of_the_alerts_doc(name: str) -> None:
    headings = re.findall(r"^## (\S+)\s*$", ALERTS_DOC.read_text(), flags=re.MULTILINE)
    anchors = {h.lower() for h in headings}
    anchor = RULES[name]["annotations"]["runbook_url"].split("#", 1)[1]
    assert anchor in anchors


# --- coverage of the promtool unit tests ------------------------------------------------------


def _groups_for(name: str) -> list[dict[str, Any]]:
    groups = []
    for path in _test_files():
        for group in _load_tests(path)["tests"]:
            if any(t["alertname"] == name for t in group.get("alert_rule_test", [])):
                groups.append(group)
    return groups


@pytest.mark.parametrize("name", sorted(RULES))
def test_unit_tests_check_firing_silence_and_the_for_boundary(name: str) -> None:
    """Some test fires the alert, some keeps it silent, and one pins ``for:``: pending and not
    firing one evaluation (1m) before it fires."""
    groups = _groups_for(name)
    firing, silent, boundary = False, False, False
    for group in groups:
        checks = [t for t in group["alert_rule_test"] if t["alertname"] == name]
        fires_at = {_duration_minutes(t["eval_time"]) for t in checks if t["exp_alerts"]}
        quiet_at = {_duration_minutes(t["eval_time"]) for t in checks if not t["exp_alerts"]}
        pending_at = {
            _duration_minutes(t["eval_time"])
            for t in group.get("promql_expr_test", [])
            if f'alertname="{name}"' in t["expr"]
            and any('alertstate="pending"' in s["labels"] for s in t["exp_samples"])
        }
        firing |= bool(fires_at)
        silent |= bool(quiet_at)
        boundary |= any(t - 1 in quiet_at and t - 1 in pending_at for t in fires_at)
    assert firing, f"no unit test expects {name} to fire"
    assert silent, f"no unit test expects {name} to stay silent"
    assert boundary, f"no unit test checks {name} pending 1m before it fires"


# --- the unit tests notice a broken rule -------------------------------------------------------


def _files_testing(name: str) -> list[Path]:
    return [
        p
        for p in _test_files()
        if any(
            t["alertname"] == name
            for g in _load_tests(p)["tests"]
            for t in g.get("alert_rule_test", [])
        )
    ]


MUTATIONS: dict[str, Callable[[dict[str, Any]], dict[str, str]]] = {
    "hold-one-minute-shorter": lambda rule: {"for": f"{_duration_minutes(rule['for']) - 1}m"},
    "never-fires": lambda rule: {"expr": "vector(1) > 2"},
}


@pytest.fixture(scope="module")
def mutation_reports(promtool: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """promtool's report on each alert's unit tests run against a broken copy of the rules.

    One folder per (alert, mutation) holds the mutated rules and the unit tests that check that
    alert; one promtool run tests them all. Returns each report by folder name.
    """
    root = tmp_path_factory.mktemp("mutations")
    files = []
    for name, rule in RULES.items():
        groups = _groups_for(name)
        for kind, mutate in MUTATIONS.items():
            folder = root / f"{name}.{kind}"
            (folder / "tests").mkdir(parents=True)
            doc = yaml.safe_load(RULES_FILE.read_text())
            for group in doc["groups"]:
                for candidate in group["rules"]:
                    if candidate.get("alert") == name:
                        candidate.update(mutate(rule))
            (folder / "alert-rules.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
            for path in _files_testing(name):
                # only the test groups about this alert: the others would pass anyway
                tests = {
                    **_load_tests(path),
                    "tests": [g for g in groups if g in _load_tests(path)["tests"]],
                }
                (folder / "tests" / path.name).write_text(yaml.safe_dump(tests, sort_keys=False))
                files.append(str(folder / "tests" / path.name))
    result = subprocess.run(
        [promtool, "test", "rules", *files],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    reports: dict[str, str] = {}
    for section in result.stdout.split("Unit Testing:")[1:]:
        path = Path(section.split("\n", 1)[0].strip())
        key = path.parent.parent.name
        reports[key] = reports.get(key, "") + section
    return reports


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
@pytest.mark.parametrize("name", sorted(RULES))
def test_unit_tests_fail_on_a_broken_rule(
    mutation_reports: dict[str, str], name: str, kind: str
) -> None:
    """A ``for:`` one minute shorter, or an expression that never fires, fails the unit tests."""
    report = mutation_reports[f"{name}.{kind}"]
    assert "FAILED" in report, f"the unit tests still pass with {kind} on {name}"
    assert f"alertname: {name}" in report
