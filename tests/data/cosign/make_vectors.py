"""Regenerate the cosign-format test vectors in this folder (run from the repository root).

Written from the published formats, independently of Aegis's own code, so the tests compare
two implementations: go-securesystemslib ``encrypted`` (scrypt + NaCl secretbox, JSON body)
for ``cosign.key``, and ``cosign sign-blob`` (base64 of an ASN.1 DER ECDSA P-256/SHA-256
signature over the file) for ``blob.txt.sig``.

    .venv/bin/python tests/data/cosign/make_vectors.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from nacl.secret import SecretBox

HERE = Path(__file__).parent
PASSWORD = b"aegis-test-vector"


def go_pem(pem_type: str, der: bytes) -> bytes:
    text = base64.b64encode(der).decode()
    body = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return f"-----BEGIN {pem_type}-----\n{body}\n-----END {pem_type}-----\n".encode()


def cosign_key(key: ec.EllipticCurvePrivateKey, pem_type: str, n: int) -> bytes:
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt, nonce = os.urandom(32), os.urandom(24)
    box_key = hashlib.scrypt(PASSWORD, salt=salt, n=n, r=8, p=1, maxmem=1 << 30, dklen=32)
    sealed = SecretBox(box_key).encrypt(pkcs8, nonce).ciphertext  # Go's secretbox.Seal output
    doc = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": n, "r": 8, "p": 1},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    return go_pem(pem_type, json.dumps(doc, separators=(",", ":")).encode())


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def main() -> None:
    current = ec.generate_private_key(ec.SECP256R1())
    (HERE / "cosign.key").write_bytes(cosign_key(current, "ENCRYPTED SIGSTORE PRIVATE KEY", 65536))
    (HERE / "cosign.pub").write_bytes(public_pem(current))
    legacy = ec.generate_private_key(ec.SECP256R1())
    (HERE / "legacy-cosign.key").write_bytes(
        cosign_key(legacy, "ENCRYPTED COSIGN PRIVATE KEY", 32768)
    )
    (HERE / "legacy-cosign.pub").write_bytes(public_pem(legacy))
    blob = b"Aegis cosign blob test vector\n"
    (HERE / "blob.txt").write_bytes(blob)
    signature = current.sign(blob, ec.ECDSA(hashes.SHA256()))
    (HERE / "blob.txt.sig").write_bytes(base64.b64encode(signature))


if __name__ == "__main__":
    main()
