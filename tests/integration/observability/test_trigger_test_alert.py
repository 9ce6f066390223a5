"""scripts/trigger_test_alert.sh against a real Alertmanager on loopback (game-day exercise 1).

The Alertmanager runs the repository's routing tree; its Slack, PagerDuty and webhook
destinations are pointed at a loopback sink (tests/support/promstack.py), so the test sees the
notifications the on-call would get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.support import promstack
from tests.support.services import free_port

pytestmark = pytest.mark.slow

SCRIPT = promstack.REPO / "scripts" / "trigger_test_alert.sh"
TOKEN = "game-day-webhook-token"


@pytest.fixture
def curl() -> str:
    binary = shutil.which("curl")
    require(binary is not None, "curl is not installed")
    assert binary is not None
    return binary


@pytest.fixture
def stack(alertmanager_bin: str, tmp_path: Path) -> Iterator[tuple[Any, promstack.HttpSink]]:
    sink = promstack.HttpSink.start()
    try:
        config = promstack.render_alertmanager_config(
            tmp_path / "am", sink_url=sink.url, webhook_token=TOKEN
        )
        with promstack.alertmanager(config, tmp_path / "am") as am:
            yield am, sink
    finally:
        sink.stop()


def _trigger(*args: str) -> subprocess.CompletedProcess[str]:
    unset = {"ALERTMANAGER_URL", "ALERTMANAGER_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _active_test_alerts(am: promstack.RunningProcess) -> list[dict[str, Any]]:
    alerts = am.get_json("/api/v2/alerts?filter=alertname%3D%22AegisTestAlert%22")
    return [a for a in alerts if a["status"]["state"] == "active"]


def test_warning_test_alert_lands_and_reaches_ops_slack_and_aegis(
    curl: str, amtool: str, stack: tuple[promstack.RunningProcess, promstack.HttpSink]
) -> None:
    am, sink = stack
    result = _trigger("--url", am.url)
    assert result.returncode == 0, result.stdout + result.stderr

    (alert,) = _active_test_alerts(am)
    assert alert["labels"]["severity"] == "warning"
    assert {r["name"] for r in alert["receivers"]} == {"aegis-webhook", "ops-slack"}
    assert "Receivers chosen by the running Alertmanager: aegis-webhook,ops-slack" in result.stdout
    # amtool's routing of the repository's config, last line of its tree
    assert "aegis-webhook,ops-slack\n" in result.stdout

    (slack, *_) = promstack.wait_for(
        lambda: sink.requests_to("/slack/ops-slack"), timeout=30, what="Slack notification"
    )
    assert slack.body["channel"] == "#aegis-alerts"
    assert "AegisTestAlert" in slack.body["attachments"][0]["title"]
    (hook, *_) = promstack.wait_for(
        lambda: sink.requests_to("/webhook/aegis-webhook"), timeout=30, what="Aegis webhook"
    )
    assert hook.headers["Authorization"] == f"Bearer {TOKEN}"
    assert hook.body["alerts"][0]["labels"]["alertname"] == "AegisTestAlert"
    assert sink.requests_to("/pagerduty") == []


def test_critical_safety_test_alert_pages_sre_and_safety(
    curl: str, stack: tuple[promstack.RunningProcess, promstack.HttpSink]
) -> None:
    am, sink = stack
    result = _trigger(
        "--url", am.url + "/", "--severity", "critical", "--category", "safety", "--minutes", "2"
    )
    assert result.returncode == 0, result.stdout + result.stderr

    (alert,) = _active_test_alerts(am)
    assert {r["name"] for r in alert["receivers"]} == {
        "aegis-webhook", "safety-slack", "safety-pagerduty", "sre-pagerduty"
    }  # fmt: skip

    def pages() -> set[str]:
        return {r.body["routing_key"] for r in sink.requests_to("/pagerduty")}

    promstack.wait_for(
        lambda: pages() == {"sre-pagerduty", "safety-pagerduty"},
        timeout=30,
        what="both PagerDuty services paged",
    )
    (slack, *_) = promstack.wait_for(
        lambda: sink.requests_to("/slack/safety-slack"), timeout=30, what="#aegis-safety"
    )
    assert slack.body["channel"] == "#aegis-safety"
    assert sink.requests_to("/slack/ops-slack") == []


def test_unreachable_alertmanager_is_an_error(curl: str) -> None:
    result = _trigger("--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert "could not reach Alertmanager" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["--severity", 'crit"ical'], ["--category", "a b"], ["--minutes", "0"], ["--url", "ftp://x"]],
    ids=["severity", "category", "minutes", "url"],
)
def test_unsafe_arguments_are_refused_before_anything_is_sent(args: list[str]) -> None:
    result = _trigger(*args)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
