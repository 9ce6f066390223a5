"""The trusted public keys: every key that may sign a model Aegis loads.

A key set comes from any of:

* a PEM file holding one or more ``PUBLIC KEY`` blocks (e.g. ``cosign.pub``);
* a directory of such files, e.g. a mounted Kubernetes Secret (its ``..data`` symlink farm is
  followed; names starting with ``.`` are skipped);
* inline PEM text, e.g. ``AEGIS_TRUSTED_KEYS="-----BEGIN PUBLIC KEY-----..."``.

``AEGIS_TRUSTED_KEYS`` (``settings.trusted_keys``) holds a path or inline PEM; several paths may
be joined with the OS path separator (``:``). Each key has an id: the first 16 hex characters
of SHA-256 over its DER SubjectPublicKeyInfo. An empty key set verifies nothing (fail closed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from aegis.registry.cosign_keys import key_id, load_public_keys
from aegis.registry.errors import KeyInvalid, NoTrustedKeys

if TYPE_CHECKING:
    from aegis.core.config import Settings

MAX_KEY_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public_key: ec.EllipticCurvePublicKey
    source: str


class KeySet:
    """An ordered, de-duplicated set of trusted P-256 public keys."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: dict[str, TrustedKey] = {}
        for key in keys:
            self._keys.setdefault(key.key_id, key)

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def get(self, key_id: str) -> TrustedKey | None:
        return self._keys.get(key_id)

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def require_nonempty(self) -> KeySet:
        if not self._keys:
            raise NoTrustedKeys(
                "no trusted model-signing keys: set AEGIS_TRUSTED_KEYS (file, directory or PEM) "
                "or pass --key"
            )
        return self

    @classmethod
    def of(cls, *public_keys: ec.EllipticCurvePublicKey, source: str = "inline") -> KeySet:
        return cls(TrustedKey(key_id(k), k, source) for k in public_keys)


def _keys_from_bytes(data: bytes, source: str) -> list[TrustedKey]:
    keys = load_public_keys(data)
    return [TrustedKey(key_id(k), k, source) for k in keys]


def _read_key_file(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyInvalid(f"cannot read trusted key file {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyInvalid(f"trusted key file {path} is larger than 1 MiB")
    return data


def load_keyset_path(path: Path) -> KeySet:
    """Keys from a PEM file or from every file in a directory (not recursive)."""
    if path.is_dir():
        keys: list[TrustedKey] = []
        for entry in sorted(path.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            found = _keys_from_bytes(_read_key_file(entry), str(entry))
            keys.extend(found)
        if not keys:
            raise KeyInvalid(f"no PEM public keys in directory {path}")
        return KeySet(keys)
    if not path.exists():
        raise KeyInvalid(f"trusted key path {path} does not exist")
    keys = _keys_from_bytes(_read_key_file(path), str(path))
    if not keys:
        raise KeyInvalid(f"no PEM public key in {path}")
    return KeySet(keys)


def load_keyset(spec: str) -> KeySet:
    """Keys from inline PEM, or from one or more paths joined with ``os.pathsep``."""
    text = spec.strip()
    if "-----BEGIN" in text:
        keys = _keys_from_bytes(text.encode(), "inline")
        if not keys:
            raise KeyInvalid("AEGIS_TRUSTED_KEYS holds PEM text but no PUBLIC KEY block")
        return KeySet(keys)
    collected: list[TrustedKey] = []
    for part in text.split(os.pathsep):
        if part.strip():
            collected.extend(load_keyset_path(Path(part.strip()).expanduser()))
    return KeySet(collected)


def keyset_from_settings(settings: Settings) -> KeySet:
    """The configured trusted keys; raises :class:`NoTrustedKeys` when none are configured."""
    if not settings.trusted_keys:
        return KeySet().require_nonempty()
    return load_keyset(settings.trusted_keys).require_nonempty()
