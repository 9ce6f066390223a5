"""cosign sign-blob signatures: made and checked both ways."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from aegis.registry import cosign_keys, signing
from aegis.registry.errors import SignatureInvalid, UntrustedKey
from aegis.registry.keyset import KeySet
from tests.unit.registry.builders import DATA, keyset, new_key


def _trusted_vector_key() -> KeySet:
    return KeySet.of(*cosign_keys.load_public_keys((DATA / "cosign.pub").read_bytes()))


def test_signature_vector_made_in_cosign_format_verifies() -> None:
    result = signing.verify_blob(
        DATA / "blob.txt", (DATA / "blob.txt.sig").read_bytes(), _trusted_vector_key()
    )
    assert result.digest == hashlib.sha256((DATA / "blob.txt").read_bytes()).hexdigest()


def test_aegis_signature_is_what_cosign_verify_blob_checks(tmp_path: Path) -> None:
    blob = tmp_path / "model.tar.gz"
    blob.write_bytes(b"payload" * 1000)
    key = new_key()
    sig = signing.sign_blob(blob, key)
    assert not sig.endswith(b"\n")
    # cosign verify-blob: base64-decode, then ECDSA-SHA256 over the file's bytes.
    key.public_key().verify(base64.b64decode(sig), blob.read_bytes(), ec.ECDSA(hashes.SHA256()))


def test_signature_of_another_file_is_refused(tmp_path: Path) -> None:
    blob = tmp_path / "b"
    blob.write_bytes(b"the real file")
    with pytest.raises(SignatureInvalid) as info:
        signing.verify_blob(blob, (DATA / "blob.txt.sig").read_bytes(), _trusted_vector_key())
    assert info.value.code == "signature_invalid"


def test_signature_by_another_key_is_refused(tmp_path: Path) -> None:
    blob = tmp_path / "b"
    blob.write_bytes(b"content")
    stranger, trusted = new_key(), new_key()
    sig = signing.sign_blob(blob, stranger)
    with pytest.raises(SignatureInvalid):
        signing.verify_blob(blob, sig, keyset(trusted))
    with pytest.raises(UntrustedKey) as info:
        signing.verify_blob(blob, sig, keyset(trusted), signer_key=stranger.public_key())
    assert info.value.code == "untrusted_key"


def test_any_of_several_trusted_keys_may_sign(tmp_path: Path) -> None:
    blob = tmp_path / "b"
    blob.write_bytes(b"content")
    first, second = new_key(), new_key()
    result = signing.verify_blob(blob, signing.sign_blob(blob, second), keyset(first, second))
    assert result.key_id == cosign_keys.key_id(second.public_key())


@pytest.mark.parametrize("payload", [b"", b"not base64 !!", b"QUJD", b"\x30\x03\x02\x01"])
def test_malformed_signatures_are_refused(tmp_path: Path, payload: bytes) -> None:
    blob = tmp_path / "b"
    blob.write_bytes(b"x")
    with pytest.raises(SignatureInvalid):
        signing.verify_blob(blob, payload, keyset(new_key()))


@pytest.mark.parametrize("size", [0, 1, signing.HASH_WINDOW - 1, signing.HASH_WINDOW + 7])
def test_sha256_file_equals_hashlib(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    data = (hashlib.sha256(b"x").digest() * (size // 32 + 1))[:size]
    path.write_bytes(data)
    assert signing.sha256_file(path) == hashlib.sha256(data).digest()
