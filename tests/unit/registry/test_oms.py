"""OpenSSF Model Signing interop, both ways, against the real ``model_signing`` package."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives import serialization

from aegis.registry import cosign_keys, oms
from aegis.registry.errors import (
    ManifestMismatch,
    ModelSourceInvalid,
    SignatureInvalid,
    UntrustedKey,
)
from tests.conftest import require
from tests.unit.registry.builders import keyset, new_key, write_model

MODEL_SIGNING = Path(sys.executable).with_name("model_signing")
FILES = {
    "config.json": b'{"a": 1}',
    "weights/w.safetensors": os.urandom(70_000),
    ".gitignore": b"x",
}
KEY = new_key()


@pytest.fixture(scope="module")
def cli() -> Path:
    require(MODEL_SIGNING.exists(), "the model-signing package (dev dependency) is not installed")
    return MODEL_SIGNING


def _key_files(tmp: Path) -> tuple[Path, Path]:
    private = tmp / "key.pem"
    private.write_bytes(
        KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp / "cosign.pub"
    public.write_bytes(cosign_keys.public_key_pem(KEY.public_key()))
    return private, public


def _run(cli: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cli), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_model_signing_verifies_what_aegis_signs_and_catches_a_change(
    cli: Path, tmp_path: Path
) -> None:
    model = write_model(tmp_path / "model", FILES)
    _, public = _key_files(tmp_path)
    oms.sign_directory(model, KEY, signature=tmp_path / "model.sig")
    ok = _run(
        cli,
        "verify",
        "key",
        "--public_key",
        str(public),
        "--signature",
        "model.sig",
        "model",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr + ok.stdout
    (model / "config.json").write_bytes(b'{"a": 2}')
    bad = _run(
        cli,
        "verify",
        "key",
        "--public_key",
        str(public),
        "--signature",
        "model.sig",
        "model",
        cwd=tmp_path,
    )
    assert bad.returncode != 0


def test_aegis_verifies_what_model_signing_signs(cli: Path, tmp_path: Path) -> None:
    model = write_model(tmp_path / "model", FILES)
    private, _ = _key_files(tmp_path)
    signed = _run(cli, "sign", "key", "--private_key", str(private), "model", cwd=tmp_path)
    assert signed.returncode == 0, signed.stderr
    result = oms.verify_directory(model, keyset(KEY), signature=tmp_path / "model.sig")
    assert set(result.resources) == {"config.json", "weights/w.safetensors"}  # .gitignore ignored

    shutil.copytree(model, tmp_path / "changed")
    (tmp_path / "changed" / "weights" / "w.safetensors").write_bytes(b"swapped")
    with pytest.raises(ManifestMismatch, match="changed"):
        oms.verify_directory(tmp_path / "changed", keyset(KEY), signature=tmp_path / "model.sig")


@pytest.fixture
def signed_model(tmp_path: Path) -> tuple[Path, Path]:
    model = write_model(tmp_path / "model", FILES)
    signature = oms.sign_directory(model, KEY, signature=tmp_path / "model.sig")
    return model, signature


def test_added_file_is_refused(signed_model: tuple[Path, Path]) -> None:
    model, sig = signed_model
    (model / "extra.json").write_bytes(b"{}")
    with pytest.raises(ManifestMismatch, match="not covered"):
        oms.verify_directory(model, keyset(KEY), signature=sig)


def test_removed_file_is_refused(signed_model: tuple[Path, Path]) -> None:
    model, sig = signed_model
    (model / "config.json").unlink()
    with pytest.raises(ManifestMismatch, match="missing"):
        oms.verify_directory(model, keyset(KEY), signature=sig)


def test_signature_by_an_untrusted_key_is_refused(signed_model: tuple[Path, Path]) -> None:
    model, sig = signed_model
    with pytest.raises(UntrustedKey):
        oms.verify_directory(model, keyset(new_key()), signature=sig)


def test_tampered_statement_is_refused(signed_model: tuple[Path, Path]) -> None:
    model, sig = signed_model
    text = sig.read_text()
    import base64
    import json

    bundle = json.loads(text)
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    payload["predicate"]["resources"] = payload["predicate"]["resources"][:1]
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    sig.write_text(json.dumps(bundle))
    with pytest.raises(SignatureInvalid):
        oms.verify_directory(model, keyset(KEY), signature=sig)


def test_signature_inside_the_model_folder_is_not_part_of_it(tmp_path: Path) -> None:
    model = write_model(tmp_path / "model", FILES)
    sig = oms.sign_directory(model, KEY, signature=model / "model.sig")
    result = oms.verify_directory(model, keyset(KEY), signature=sig)
    assert "model.sig" not in result.resources


def test_symlinks_are_refused_whatever_the_signature_says(signed_model: tuple[Path, Path]) -> None:
    model, sig = signed_model
    (model / "link").symlink_to("config.json")
    with pytest.raises(ModelSourceInvalid):
        oms.verify_directory(model, keyset(KEY), signature=sig)


def test_shard_serialization_from_model_signing_is_verified(tmp_path: Path) -> None:
    model_signing: ModuleType | None
    try:
        model_signing = importlib.import_module("model_signing")  # a dev dependency
    except ImportError:
        model_signing = None
    require(model_signing is not None, "model_signing (a dev dependency) is not installed")
    assert model_signing is not None
    model = write_model(tmp_path / "model", FILES)
    private, _ = _key_files(tmp_path)
    sig = tmp_path / "sharded.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private).set_hashing_config(
        model_signing.hashing.Config().use_shard_serialization(shard_size=16384)
    ).sign(model, sig)
    result = oms.verify_directory(model, keyset(KEY), signature=sig)
    assert any(name.startswith("weights/w.safetensors:16384:") for name in result.resources)


@pytest.mark.parametrize(
    "change",
    [
        {"dsseEnvelope": "not an object"},
        {"verificationMaterial": "not an object"},
        {"verificationMaterial": {"publicKey": ["not an object"]}},
        {"signatures": ["not an object"]},
        {"signatures": {"sig": "not a list"}},
    ],
)
def test_a_malformed_bundle_is_an_invalid_signature(
    signed_model: tuple[Path, Path], change: dict[str, object]
) -> None:
    import json

    model, sig = signed_model
    bundle = json.loads(sig.read_text())
    if "signatures" in change:
        bundle["dsseEnvelope"]["signatures"] = change["signatures"]
    else:
        bundle.update(change)
    sig.write_text(json.dumps(bundle))
    with pytest.raises(SignatureInvalid, match="OMS signature"):
        oms.verify_directory(model, keyset(KEY), signature=sig)
