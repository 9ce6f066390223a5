from __future__ import annotations

import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aegis.audit import keys
from aegis.audit.errors import AuditError


def test_processes_creating_the_audit_key_together_all_get_the_one_key(tmp_path: Path) -> None:
    # The backend's checkpoint job and `aegis audit checkpoint` may both find no key on a new
    # install; a second key would sign checkpoints the published .pub cannot verify.
    path = tmp_path / "keys" / "audit-signing.key"
    start = threading.Barrier(12)

    def first_use(_: int) -> str:
        start.wait()
        return keys.key_id(keys.load_or_create_private_key(path).public_key())

    with ThreadPoolExecutor(max_workers=12) as pool:
        seen = set(pool.map(first_use, range(12)))

    assert seen == {keys.key_id(keys.load_public_key(path.with_suffix(".pub")))}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "audit-signing.key",
        "audit-signing.pub",
    ]


def test_an_existing_key_is_used_and_its_folder_left_alone(tmp_path: Path) -> None:
    # production mounts the key read-only: first use must not write next to it
    path = tmp_path / "audit-signing.key"
    made = keys.load_or_create_private_key(path)
    path.with_suffix(".pub").unlink()

    again = keys.load_or_create_private_key(path)

    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert again.public_key().public_bytes(*raw) == made.public_key().public_bytes(*raw)
    assert [p.name for p in tmp_path.iterdir()] == ["audit-signing.key"]


def test_a_signing_key_named_like_its_public_key_is_refused(tmp_path: Path) -> None:
    # signing.pub's public key would be signing.pub: the private key would be written over
    path = tmp_path / "signing.pub"

    with pytest.raises(AuditError, match=r"signing\.pub is named like its public key"):
        keys.load_or_create_private_key(path)
    assert not path.exists()


def test_a_private_key_kept_in_a_pub_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    pem = _new_private_pem()
    path = tmp_path / "signing.pub"
    path.write_bytes(pem)

    with pytest.raises(AuditError, match="named like its public key"):
        keys.load_or_create_private_key(path)
    assert path.read_bytes() == pem


@pytest.mark.parametrize("content", [b"", b"not a key\n"])
def test_an_unloadable_signing_key_is_named_in_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "audit-signing.key"
    path.write_bytes(content)

    with pytest.raises(AuditError) as raised:
        keys.load_or_create_private_key(path)
    assert str(path) in raised.value.message
    assert "not an unencrypted PEM private key" in raised.value.message
    assert "\n" not in raised.value.message
    assert path.read_bytes() == content


def _new_private_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
