"""The cloud SDK scanner (completion criterion 1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aegis.cli.main import run
from aegis.sdkscan import service

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("import boto3\n", "boto3"),
        ("import botocore.session as s\n", "botocore.session"),
        ("from google.cloud import storage\n", "google.cloud"),
        ("from google import cloud\n", "google.cloud"),
        ("import azure.storage.blob\n", "azure.storage.blob"),
        ("import oci\n", "oci"),
        ("import importlib\nimportlib.import_module('boto3')\n", "boto3"),
        ("import importlib as il\nil.import_module('aiobotocore')\n", "aiobotocore"),
        (
            "from importlib import import_module as im\nim('google.cloud.storage')\n",
            "google.cloud.storage",
        ),
        ("__import__('azure.identity')\n", "azure.identity"),
    ],
)
def test_each_import_form_is_found(tmp_path: Path, source: str, module: str) -> None:
    target = tmp_path / "mod.py"
    target.write_text(source)
    findings = service.scan([tmp_path])
    assert [f.module for f in findings] == [module]


def test_strings_and_lookalikes_are_not_findings(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text(
        "import obstore\nimport googleapis_fake\nNAME = 'boto3'\nimport azurelib\n"
    )
    assert service.scan([tmp_path]) == []


def test_aegis_itself_has_zero_findings() -> None:
    assert service.scan([REPO / "src"]) == []


def test_strict_cli_exits_non_zero_and_prints_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.py").write_text("x = 1\nimport boto3\n")
    code = run(["scan", "sdk", "--strict", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{tmp_path / 'bad.py'}:2: import boto3" in out


def test_non_strict_cli_reports_but_exits_zero(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("import boto3\n")
    assert run(["scan", "sdk", str(tmp_path)]) == 0


def test_runbook_script_wraps_the_cli(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("import boto3\n")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "scan_cloud_sdk_usage.py"),
            "--strict",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "import boto3" in result.stdout


def test_unparsable_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.py").write_text("def (:\n")
    assert run(["scan", "sdk", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "cannot parse" in err and "\n" not in err
