"""Signing keys in cosign's formats: ECDSA P-256, SHA-256.

``cosign generate-key-pair`` writes two files, and Aegis reads and writes the same:

* ``cosign.pub``: PEM ``PUBLIC KEY`` (DER SubjectPublicKeyInfo);
* ``cosign.key``: PEM ``ENCRYPTED SIGSTORE PRIVATE KEY`` (older cosign: ``ENCRYPTED COSIGN
  PRIVATE KEY``) whose body is the JSON that go-securesystemslib's ``encrypted.Encrypt`` makes::

    {"kdf": {"name": "scrypt", "params": {"N": 65536, "r": 8, "p": 1}, "salt": "<b64 32 B>"},
     "cipher": {"name": "nacl/secretbox", "nonce": "<b64 24 B>"},
     "ciphertext": "<b64 secretbox.Seal(PKCS#8 DER private key)>"}

  The secretbox key is ``scrypt(password, salt, N, r, p, 32)``. Like go-securesystemslib, only
  the three parameter sets it emits (N = 2^15, 2^16, 2^17; r = 8; p = 1) are accepted, so a
  tampered file cannot make Aegis burn memory. The password comes from ``COSIGN_PASSWORD``.

Plain PEM keys (``PRIVATE KEY``, ``EC PRIVATE KEY``, ``ENCRYPTED PRIVATE KEY``) also load.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aegis.registry.errors import KeyInvalid, KeyPasswordInvalid

SIGSTORE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
PUBLIC_PEM_TYPE = "PUBLIC KEY"
SCRYPT_PARAMS = (
    {"N": 32768, "r": 8, "p": 1},
    {"N": 65536, "r": 8, "p": 1},
    {"N": 131072, "r": 8, "p": 1},
)
DEFAULT_SCRYPT = SCRYPT_PARAMS[1]  # what current cosign writes (go-securesystemslib "Standard")
SALT_SIZE = 32
NONCE_SIZE = 24
KEY_ID_LENGTH = 16

_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class PemBlock:
    type: str
    der: bytes


def pem_blocks(data: bytes) -> list[PemBlock]:
    """Every PEM block in ``data``, in order (headers such as ``Proc-Type`` are refused)."""
    blocks = []
    for match in _PEM_RE.finditer(data):
        body = match.group(2)
        if b":" in body:
            raise KeyInvalid("PEM blocks with headers are not supported")
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except binascii.Error:
            raise KeyInvalid(f"malformed base64 in PEM block {match.group(1).decode()}") from None
        blocks.append(PemBlock(match.group(1).decode("ascii"), der))
    return blocks


def pem_encode(pem_type: str, der: bytes) -> bytes:
    """PEM exactly as Go's ``pem.EncodeToMemory`` writes it (64-column lines)."""
    text = base64.b64encode(der).decode("ascii")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (
        f"-----BEGIN {pem_type}-----\n" + "\n".join(lines) + f"\n-----END {pem_type}-----\n"
    ).encode()


def check_p256(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey | object) -> None:
    """Aegis signs and verifies with ECDSA P-256 only (cosign's default algorithm)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return
    raise KeyInvalid(f"unsupported key type {type(key).__name__}: only ECDSA P-256 keys are used")


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_key_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """A short stable id: the first 16 hex characters of SHA-256 over the DER public key."""
    return hashlib.sha256(public_key_der(key)).hexdigest()[:KEY_ID_LENGTH]


def _scrypt_key(password: bytes, salt: bytes, params: dict[str, int]) -> bytes:
    n, r, p = params["N"], params["r"], params["p"]
    return hashlib.scrypt(
        password, salt=salt, n=n, r=r, p=p, maxmem=256 * r * n * p + (16 << 20), dklen=32
    )


def encrypt_private_key(
    key: ec.EllipticCurvePrivateKey,
    password: bytes,
    *,
    pem_type: str = SIGSTORE_PEM_TYPE,
    params: dict[str, int] | None = None,
) -> bytes:
    """``cosign.key`` bytes for ``key`` sealed with ``password``."""
    from nacl.secret import SecretBox

    check_p256(key)
    params = dict(params or DEFAULT_SCRYPT)
    if params not in SCRYPT_PARAMS:
        raise KeyInvalid("unsupported scrypt parameters")
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt, nonce = os.urandom(SALT_SIZE), os.urandom(NONCE_SIZE)
    sealed = SecretBox(_scrypt_key(password, salt, params)).encrypt(pkcs8, nonce).ciphertext
    document = {
        "kdf": {"name": "scrypt", "params": params, "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(sealed),
    }
    return pem_encode(pem_type, json.dumps(document, separators=(",", ":")).encode())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64field(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise KeyInvalid(f"encrypted key: {name} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise KeyInvalid(f"encrypted key: {name} is not valid base64") from None


def decrypt_cosign_key(body: bytes, password: bytes) -> bytes:
    """The PKCS#8 DER inside a cosign-encrypted key body (the JSON document)."""
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    try:
        document = json.loads(body)
        kdf, cipher = document["kdf"], document["cipher"]
        params = {k: int(kdf["params"][k]) for k in ("N", "r", "p")}
        names = (kdf["name"], cipher["name"])
    except (ValueError, KeyError, TypeError):
        raise KeyInvalid("encrypted key is not go-securesystemslib JSON") from None
    if names != ("scrypt", "nacl/secretbox"):
        raise KeyInvalid(f"encrypted key uses unsupported kdf/cipher {names}")
    if params not in SCRYPT_PARAMS:
        raise KeyInvalid("encrypted key uses unsupported scrypt parameters")
    salt = _b64field(kdf.get("salt"), "salt")
    nonce = _b64field(cipher.get("nonce"), "nonce")
    sealed = _b64field(document.get("ciphertext"), "ciphertext")
    if len(nonce) != NONCE_SIZE:
        raise KeyInvalid("encrypted key has a nonce of the wrong size")
    try:
        return SecretBox(_scrypt_key(password, salt, params)).decrypt(sealed, nonce)
    except CryptoError:
        raise KeyPasswordInvalid(
            "cannot decrypt the private key: wrong password (COSIGN_PASSWORD)"
        ) from None


def load_private_key(data: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from cosign's encrypted format or plain PEM."""
    blocks = [b for b in pem_blocks(data) if "PRIVATE KEY" in b.type]
    if len(blocks) != 1:
        raise KeyInvalid("expected exactly one PEM private key block")
    block = blocks[0]
    try:
        if block.type in {SIGSTORE_PEM_TYPE, COSIGN_PEM_TYPE}:
            der = decrypt_cosign_key(block.der, password or b"")
            key = serialization.load_der_private_key(der, None)
        elif block.type == "ENCRYPTED PRIVATE KEY":
            if not password:
                raise KeyPasswordInvalid("the private key is encrypted: set COSIGN_PASSWORD")
            key = serialization.load_der_private_key(block.der, password)
        elif block.type in {"PRIVATE KEY", "EC PRIVATE KEY"}:
            key = serialization.load_der_private_key(block.der, None)
        else:
            raise KeyInvalid(f"unsupported private key PEM type {block.type!r}")
    except ValueError as exc:
        if block.type == "ENCRYPTED PRIVATE KEY":
            raise KeyPasswordInvalid("cannot decrypt the private key: wrong password") from None
        raise KeyInvalid(f"cannot parse private key: {exc}") from None
    check_p256(key)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def load_private_key_file(path: Path, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyInvalid(f"cannot read key file {path}: {exc.strerror}") from None
    return load_private_key(data, password)


def load_public_keys(data: bytes) -> list[ec.EllipticCurvePublicKey]:
    """Every ``PUBLIC KEY`` block in ``data`` (a bundle of several PEM keys is fine)."""
    keys = []
    for block in pem_blocks(data):
        if block.type != PUBLIC_PEM_TYPE:
            continue
        try:
            key = serialization.load_der_public_key(block.der)
        except ValueError as exc:
            raise KeyInvalid(f"cannot parse public key: {exc}") from None
        check_p256(key)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        keys.append(key)
    return keys


def generate_key_pair(password: bytes) -> tuple[bytes, bytes]:
    """``(cosign.key bytes, cosign.pub bytes)`` for a fresh P-256 key."""
    key = generate_private_key()
    return encrypt_private_key(key, password), public_key_pem(key.public_key())
