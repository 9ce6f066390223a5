"""``aegis keys`` and ``aegis model`` end to end through the CLI entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aegis.cli.main import run
from tests.support.processes import run_on_a_full_disk
from tests.unit.registry.builders import DATA, write_model

REPO = Path(__file__).resolve().parents[3]
FILES = {"config.json": b'{"a": 1}', "weights.safetensors": os.urandom(50_000)}


@pytest.fixture
def keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COSIGN_PASSWORD", "correct horse")
    assert run(["keys", "generate", "--out", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys"


def test_keys_generate_writes_an_encrypted_key_and_a_public_key(keys: Path) -> None:
    assert (keys / "cosign.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED SIGSTORE")
    assert (keys / "cosign.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert (keys / "cosign.key").stat().st_mode & 0o777 == 0o600
    assert run(["keys", "generate", "--out", str(keys)]) == 1  # never overwrites silently


def test_keys_generate_force_keeps_the_old_pair_when_it_cannot_write_the_new_one(
    keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old_key = (keys / "cosign.key").read_bytes()
    (keys / "cosign.pub").unlink()
    (keys / "cosign.pub").mkdir()

    assert run(["keys", "generate", "--out", str(keys), "--force"]) == 1

    assert f"{keys / 'cosign.pub'} is not a regular file" in capsys.readouterr().err
    assert (keys / "cosign.key").read_bytes() == old_key
    assert sorted(p.name for p in keys.iterdir()) == ["cosign.key", "cosign.pub"]


def test_keys_generate_writes_no_private_key_without_its_public_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "correct horse")
    (tmp_path / "keys" / "cosign.pub").mkdir(parents=True)

    assert run(["keys", "generate", "--out", str(tmp_path / "keys"), "--force"]) == 1

    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["cosign.pub"]


def test_keys_generate_refuses_a_password_that_is_not_utf8_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "\udcff\udcfe")  # the bytes ff fe, as os.environ has them

    assert run(["keys", "generate", "--out", str(tmp_path / "keys")]) == 1

    assert capsys.readouterr().err == "error: COSIGN_PASSWORD is not valid UTF-8\n"
    assert not (tmp_path / "keys").exists()


def test_keys_generate_without_a_password_says_the_new_key_needs_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)  # and stdin is no terminal here

    assert run(["keys", "generate", "--out", str(tmp_path / "keys")]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: a new key is encrypted with a password: set COSIGN_PASSWORD")
    assert not (tmp_path / "keys").exists()


def test_build_sign_verify_round_trip(
    keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = write_model(tmp_path / "model", FILES)
    archive = tmp_path / "model.tar.gz"
    assert (
        run(
            [
                "model",
                "build",
                str(model),
                "--name",
                "demo",
                "--version",
                "0.1",
                "--out",
                str(archive),
            ]
        )
        == 0
    )
    assert run(["model", "sign", str(archive), "--key", str(keys / "cosign.key")]) == 0
    assert (tmp_path / "model.tar.gz.sig").exists()
    capsys.readouterr()
    assert run(["model", "verify", str(archive), "--key", str(keys / "cosign.pub")]) == 0
    assert capsys.readouterr().out.strip() == "verified"


def test_verify_fails_with_one_error_line_for_another_key(
    keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = write_model(tmp_path / "model", FILES)
    archive = tmp_path / "model.tar.gz"
    run(["model", "build", str(model), "--name", "demo", "--version", "0.1", "--out", str(archive)])
    run(["model", "sign", str(archive), "--key", str(keys / "cosign.key")])
    capsys.readouterr()
    assert run(["model", "verify", str(archive), "--key", str(DATA / "cosign.pub")]) == 1
    captured = capsys.readouterr()
    assert "verified" not in captured.out
    assert captured.err.startswith("error: signature does not match")


def test_sign_with_a_wrong_password_fails_cleanly(
    keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blob = tmp_path / "x.tar.gz"
    blob.write_bytes(b"x")
    monkeypatch.setenv("COSIGN_PASSWORD", "wrong")
    assert run(["model", "sign", str(blob), "--key", str(keys / "cosign.key")]) == 1
    assert "wrong password" in capsys.readouterr().err
    assert not (tmp_path / "x.tar.gz.sig").exists()


def test_cosign_signature_vector_is_accepted_by_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["model", "verify", str(DATA / "blob.txt"), "--key", str(DATA / "cosign.pub")]
    # blob.txt is not a model archive: the signature step passes, the content check refuses.
    assert run(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "signature" not in err


def test_verify_defaults_to_the_configured_trusted_keys(
    keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_model(tmp_path / "model", FILES)
    archive = tmp_path / "model.tar.gz"
    run(["model", "build", str(model), "--name", "demo", "--version", "0.1", "--out", str(archive)])
    run(["model", "sign", str(archive), "--key", str(keys / "cosign.key")])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AEGIS_TRUSTED_KEYS", raising=False)
    monkeypatch.delenv("COSIGN_PUB_KEY", raising=False)
    assert run(["model", "verify", str(archive)]) == 1  # no trusted keys: fail closed
    monkeypatch.setenv("AEGIS_TRUSTED_KEYS", f"{DATA / 'cosign.pub'}:{keys / 'cosign.pub'}")
    assert run(["model", "verify", str(archive)]) == 0


def test_oms_sign_and_verify_a_directory(keys: Path, tmp_path: Path) -> None:
    model = write_model(tmp_path / "model", FILES)
    sig = tmp_path / "model.sig"
    assert (
        run(
            [
                "model",
                "sign",
                str(model),
                "--key",
                str(keys / "cosign.key"),
                "--format",
                "oms",
                "--signature",
                str(sig),
            ]
        )
        == 0
    )
    verify = [
        "model",
        "verify",
        str(model),
        "--signature",
        str(sig),
        "--key",
        str(keys / "cosign.pub"),
    ]
    assert run(verify) == 0
    (model / "new.json").write_bytes(b"{}")
    assert run(verify) == 1


def test_runbook_script_wraps_the_cli(keys: Path, tmp_path: Path) -> None:
    model = write_model(tmp_path / "model", FILES)
    archive = tmp_path / "model.tar.gz"
    run(["model", "build", str(model), "--name", "demo", "--version", "0.1", "--out", str(archive)])
    run(["model", "sign", str(archive), "--key", str(keys / "cosign.key")])
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "verify_model_signatures.py"),
            str(archive),
            "--key",
            str(keys / "cosign.pub"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "verified"
    archive.write_bytes(archive.read_bytes()[:-10])
    failed = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "verify_model_signatures.py"),
            str(archive),
            "--key",
            str(keys / "cosign.pub"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("error:")


def test_build_of_an_empty_directory_fails_in_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    archive = tmp_path / "model.tar.gz"
    args = ["model", "build", str(tmp_path / "empty"), "--name", "demo", "--version", "0.1"]

    assert run([*args, "--out", str(archive)]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {tmp_path / 'empty'} holds no file to package\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


SIGNATURE_LIMIT = 64 * 1024  # below the size of the signature of MANY_FILES


def test_an_oms_signature_that_fails_part_way_leaves_the_old_one_whole(
    keys: Path, tmp_path: Path
) -> None:
    model = write_model(tmp_path / "model", {f"f/{n:04}.bin": b"%d" % n for n in range(600)})
    sig = tmp_path / "model.sig"
    sign = ["model", "sign", str(model), "--format", "oms", "--key", str(keys / "cosign.key")]
    assert run([*sign, "--signature", str(sig)]) == 0
    before = sig.read_bytes()
    assert len(before) > SIGNATURE_LIMIT  # the limit cuts the second signature short
    (model / "f" / "new.bin").write_bytes(b"changed")

    result = run_on_a_full_disk(
        [sys.executable, "-m", "aegis", *sign, "--signature", str(sig)],
        limit=SIGNATURE_LIMIT,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )

    assert result.returncode == 1
    assert result.stderr == f"error: cannot write {sig}: File too large\n"
    assert sig.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys", "model", "model.sig"]


def test_a_blob_signature_that_fails_part_way_leaves_the_old_one_whole(
    keys: Path, tmp_path: Path
) -> None:
    model = write_model(tmp_path / "model", FILES)
    archive = tmp_path / "model.tar.gz"
    build = ["model", "build", str(model), "--name", "demo", "--version", "0.1"]
    assert run([*build, "--out", str(archive)]) == 0
    sign = ["model", "sign", str(archive), "--key", str(keys / "cosign.key")]
    assert run(sign) == 0
    sig = tmp_path / "model.tar.gz.sig"
    before = sig.read_bytes()

    result = run_on_a_full_disk(
        [sys.executable, "-m", "aegis", *sign],
        limit=16,  # below a blob signature's size
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )

    assert result.returncode == 1
    assert result.stderr == f"error: cannot write {sig}: File too large\n"
    assert sig.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "keys",
        "model",
        "model.tar.gz",
        "model.tar.gz.sig",
    ]
