"""cosign key formats: read what cosign writes, write what cosign reads."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from aegis.registry import cosign_keys
from aegis.registry.errors import KeyInvalid, KeyPasswordInvalid
from tests.unit.registry.builders import DATA

PASSWORD = b"aegis-test-vector"


def _public(name: str) -> ec.EllipticCurvePublicKey:
    (key,) = cosign_keys.load_public_keys((DATA / name).read_bytes())
    return key


@pytest.mark.parametrize(
    ("key_file", "pub_file"),
    [("cosign.key", "cosign.pub"), ("legacy-cosign.key", "legacy-cosign.pub")],
)
def test_cosign_encrypted_key_vectors_decrypt_to_their_public_key(
    key_file: str, pub_file: str
) -> None:
    key = cosign_keys.load_private_key((DATA / key_file).read_bytes(), PASSWORD)
    assert cosign_keys.public_key_pem(key.public_key()) == cosign_keys.public_key_pem(
        _public(pub_file)
    )


def test_key_generated_by_cosign_itself_decrypts() -> None:
    data = (DATA / "third_party" / "conforma-cosign.key").read_bytes()
    key = cosign_keys.load_private_key(data, b"")
    assert cosign_keys.key_id(key.public_key()) == "ea1ec9a4ce327283"


def test_wrong_password_is_refused_with_a_typed_error() -> None:
    with pytest.raises(KeyPasswordInvalid) as info:
        cosign_keys.load_private_key((DATA / "cosign.key").read_bytes(), b"not-the-password")
    assert info.value.code == "key_password_invalid"


def test_encrypted_key_round_trips_and_matches_go_securesystemslib_layout() -> None:
    key = cosign_keys.generate_private_key()
    pem = cosign_keys.encrypt_private_key(key, b"pw")
    (block,) = cosign_keys.pem_blocks(pem)
    assert block.type == "ENCRYPTED SIGSTORE PRIVATE KEY"
    document = json.loads(block.der)
    assert list(document) == ["kdf", "cipher", "ciphertext"]
    assert document["kdf"]["name"] == "scrypt"
    assert document["kdf"]["params"] == {"N": 65536, "r": 8, "p": 1}
    assert len(base64.b64decode(document["kdf"]["salt"])) == 32
    assert document["cipher"] == {"name": "nacl/secretbox", "nonce": document["cipher"]["nonce"]}
    assert len(base64.b64decode(document["cipher"]["nonce"])) == 24
    assert all(len(line) <= 64 for line in pem.decode().splitlines())
    loaded = cosign_keys.load_private_key(pem, b"pw")
    assert cosign_keys.key_id(loaded.public_key()) == cosign_keys.key_id(key.public_key())


def test_tampered_scrypt_parameters_are_refused_before_any_work() -> None:
    pem = cosign_keys.encrypt_private_key(cosign_keys.generate_private_key(), b"pw")
    (block,) = cosign_keys.pem_blocks(pem)
    document = json.loads(block.der)
    document["kdf"]["params"]["N"] = 1 << 24
    forged = cosign_keys.pem_encode(block.type, json.dumps(document).encode())
    with pytest.raises(KeyInvalid, match="scrypt"):
        cosign_keys.load_private_key(forged, b"pw")


def test_plain_pem_pkcs8_key_loads_without_password() -> None:
    key = cosign_keys.generate_private_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert cosign_keys.key_id(cosign_keys.load_private_key(pem).public_key()) == (
        cosign_keys.key_id(key.public_key())
    )


def test_non_p256_keys_are_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyInvalid, match="P-256"):
        cosign_keys.load_private_key(pem)
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(KeyInvalid):
        cosign_keys.load_public_keys(cosign_keys.public_key_pem(p384))


def test_key_id_is_sha256_of_der_public_key_first_16_hex() -> None:
    key = _public("cosign.pub")
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib

    assert cosign_keys.key_id(key) == hashlib.sha256(der).hexdigest()[:16]


def _sealed_document() -> tuple[str, dict[str, Any]]:
    pem = cosign_keys.encrypt_private_key(cosign_keys.generate_private_key(), b"pw")
    (block,) = cosign_keys.pem_blocks(pem)
    return block.type, json.loads(block.der)


def _forge(pem_type: str, document: object) -> bytes:
    return cosign_keys.pem_encode(pem_type, json.dumps(document).encode())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("kdf"), "not go-securesystemslib JSON"),
        (lambda d: d["kdf"].update(name="argon2"), "unsupported kdf/cipher"),
        (lambda d: d["cipher"].update(name="aes-gcm"), "unsupported kdf/cipher"),
        (lambda d: d["kdf"].update(salt=12), "salt is not a base64 string"),
        (lambda d: d["cipher"].update(nonce="not base64!"), "nonce is not valid base64"),
        (lambda d: d["cipher"].update(nonce=base64.b64encode(b"short").decode()), "wrong size"),
        (lambda d: d.update(ciphertext=None), "ciphertext is not a base64 string"),
    ],
    ids=[
        "no kdf",
        "other kdf",
        "other cipher",
        "salt type",
        "nonce base64",
        "nonce size",
        "no ciphertext",
    ],
)
def test_malformed_encrypted_keys_are_refused_with_the_reason(
    change: Callable[[dict[str, Any]], object], message: str
) -> None:
    pem_type, document = _sealed_document()
    change(document)
    with pytest.raises(KeyInvalid, match=message):
        cosign_keys.load_private_key(_forge(pem_type, document), b"pw")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"no pem here", "exactly one PEM private key block"),
        (
            b"-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n"
            b"-----END PRIVATE KEY-----\n",
            "headers are not supported",
        ),
        (b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", "malformed base64"),
        (
            cosign_keys.pem_encode("OPENSSH PRIVATE KEY", b"\x00" * 8),
            "unsupported private key PEM type",
        ),
        (cosign_keys.pem_encode("PRIVATE KEY", b"\x30\x03garbage"), "cannot parse private key"),
        (
            cosign_keys.pem_encode("PRIVATE KEY", b"\x00") * 2,
            "exactly one PEM private key block",
        ),
    ],
    ids=["no block", "pem headers", "bad base64", "other type", "garbage der", "two keys"],
)
def test_malformed_private_key_files_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(KeyInvalid, match=message):
        cosign_keys.load_private_key(data)


def test_pkcs8_encrypted_key_needs_its_password() -> None:
    key = cosign_keys.generate_private_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"right-password"),
    )
    with pytest.raises(KeyPasswordInvalid, match="set COSIGN_PASSWORD"):
        cosign_keys.load_private_key(pem)
    with pytest.raises(KeyPasswordInvalid, match="wrong password"):
        cosign_keys.load_private_key(pem, b"wrong-password")
    loaded = cosign_keys.load_private_key(pem, b"right-password")
    assert cosign_keys.key_id(loaded.public_key()) == cosign_keys.key_id(key.public_key())


def test_unreadable_key_file_and_garbage_public_key_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyInvalid, match="cannot read key file"):
        cosign_keys.load_private_key_file(tmp_path / "absent.key")
    with pytest.raises(KeyInvalid, match="cannot parse public key"):
        cosign_keys.load_public_keys(cosign_keys.pem_encode("PUBLIC KEY", b"\x30\x03abc"))
    assert (
        cosign_keys.load_public_keys(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        == []
    )
