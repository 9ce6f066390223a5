"""The platform's Ed25519 audit key, kept outside the database.

Embedded mode keeps it in ``<data dir>/keys/audit-signing.key`` (mode 0600); production points
``AUDIT_SIGNING_KEY_FILE`` at a mounted secret. Verifiers need only the public key
(``AUDIT_VERIFY_KEY_FILE``, default ``<data dir>/keys/audit-signing.pub``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aegis.audit.errors import AuditError
from aegis.core.files import replace_atomically, staged


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``, created (0600, with its ``.pub``) on first use.

    The backend's checkpoint job and a CLI command may both create it at once: the key is
    written whole to a temporary file and linked into place, which fails if another process got
    there first, so every process ends up with the one key and none reads a half-written file.
    """
    if path.suffix == ".pub":  # its public key would be written over it, and read as it
        raise AuditError(
            f"the audit signing key {path} is named like its public key (.pub); "
            "give the private key another name, e.g. audit-signing.key"
        )
    created = not path.exists()
    if created:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_new(path, pem)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise AuditError(f"cannot read the audit signing key {path}: {exc.strerror}") from None
    except TypeError:  # a password-protected key
        raise AuditError(
            f"cannot load the audit signing key {path}: it is password-protected "
            "(the audit key is an unencrypted PEM)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise AuditError(
            f"cannot load the audit signing key {path}: not an unencrypted PEM private key"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{path} is not an Ed25519 private key")
    if created:  # the winner's public key, whoever won; a mounted key's folder is left alone
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        replace_atomically(path.with_suffix(".pub"), public_pem, mode=0o644)
    return key


def _write_new(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` (0600) unless a file is already there."""
    tmp = staged(path, data)
    try:
        with contextlib.suppress(FileExistsError):  # another process's key stands
            os.link(tmp, path)
    finally:
        tmp.unlink()


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the audit verification key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path} is not an Ed25519 public key")
    return key
