"""Streaming AES-256-GCM for backup artifacts.

Layout (all integers big-endian)::

    header = b"AEGISENC" | version (1 byte) | chunk size (4) | salt (16) | key check (16)
    chunk  = nonce (12, random) | length of ciphertext+tag (4) | ciphertext+tag

The key material is HKDF-SHA256(secret, salt, info) — 64 bytes: the AES-256-GCM key and a key
that makes the header's key check (HMAC-SHA256 over the header, truncated), so a wrong
``BACKUP_ENCRYPTION_KEY`` is reported as such instead of as corruption.

Every chunk's associated data is the header, the chunk's index (8 bytes) and a last-chunk flag
(1 byte). Reordering or dropping chunks breaks the index; cutting the artifact at a chunk
boundary leaves no chunk flagged last; appending after the last chunk is refused; a chunk from
another artifact fails (different header and salt). This is the STREAM construction: the total
number of chunks is authenticated by the flag on the last one, since it is not known while the
artifact is still being written.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aegis.backup.errors import BackupCorrupt, BackupKeyInvalid

MAGIC = b"AEGISENC"
VERSION = 1
CHUNK_SIZE = 1024 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024  # refuse headers that would make a reader buffer more
MIN_SECRET_LENGTH = 32
_PREFIX = struct.Struct(">8sBI16s")  # magic, version, chunk size, salt
_CHUNK_HEAD = struct.Struct(">12sI")  # nonce, ciphertext length
_INFO = b"aegis backup v1 aes-256-gcm"
_TAG = 16
HEADER_SIZE = _PREFIX.size + 16


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def check_secret(secret: str) -> bytes:
    """The secret's bytes; raise BackupKeyInvalid when it is too short to be a key."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise BackupKeyInvalid(
            f"BACKUP_ENCRYPTION_KEY is shorter than {MIN_SECRET_LENGTH} characters; "
            "use a random value, e.g. `openssl rand -base64 32`"
        )
    return secret.encode("utf-8")


def _keys(secret: str, salt: bytes) -> tuple[AESGCM, bytes]:
    material = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=_INFO).derive(
        check_secret(secret)
    )
    return AESGCM(material[:32]), material[32:]


def _key_check(check_key: bytes, prefix: bytes) -> bytes:
    return hmac.new(check_key, b"key-check|" + prefix, hashlib.sha256).digest()[:16]


def _aad(header: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if last else 0)


def is_encrypted(head: bytes) -> bool:
    return head.startswith(MAGIC)


class EncryptingWriter(io.RawIOBase):
    """Write plaintext in; authenticated chunks go to ``sink``. ``close()`` writes the last one.

    The sink itself is not closed.
    """

    def __init__(self, sink: Sink, secret: str, *, chunk_size: int = CHUNK_SIZE) -> None:
        super().__init__()
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError("chunk size out of range")
        salt = os.urandom(16)
        self._aead, check_key = _keys(secret, salt)
        prefix = _PREFIX.pack(MAGIC, VERSION, chunk_size, salt)
        self._header = prefix + _key_check(check_key, prefix)
        self._sink = sink
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self._index = 0
        sink.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("write to a closed EncryptingWriter")
        self._buffer.extend(data)
        # Keep at least one byte back: only close() knows which chunk is the last.
        while len(self._buffer) > self._chunk_size:
            self._emit(bytes(self._buffer[: self._chunk_size]), last=False)
            del self._buffer[: self._chunk_size]
        return len(data)

    def _emit(self, plaintext: bytes, *, last: bool) -> None:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext, _aad(self._header, self._index, last))
        self._sink.write(_CHUNK_HEAD.pack(nonce, len(sealed)))
        self._sink.write(sealed)
        self._index += 1

    def close(self) -> None:
        if not self.closed:
            self._emit(bytes(self._buffer), last=True)
            self._buffer.clear()
        super().close()


class DecryptingReader(io.RawIOBase):
    """Read plaintext out of an encrypted artifact, authenticating each chunk before use.

    Raises :class:`BackupKeyInvalid` (at construction) for the wrong key and
    :class:`BackupCorrupt` for an altered, reordered, truncated or extended artifact.
    """

    def __init__(self, source: BinaryIO, secret: str) -> None:
        super().__init__()
        self._source = source
        header = self._read_exact(HEADER_SIZE)
        if len(header) < HEADER_SIZE or not is_encrypted(header):
            raise BackupCorrupt("not an encrypted Aegis backup (bad or missing header)")
        prefix, check = header[: _PREFIX.size], header[_PREFIX.size :]
        _, version, chunk_size, salt = _PREFIX.unpack(prefix)
        if version != VERSION:
            raise BackupCorrupt(f"encrypted backup format version {version} is not supported")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise BackupCorrupt("encrypted backup header names an invalid chunk size")
        self._aead, check_key = _keys(secret, salt)
        if not hmac.compare_digest(check, _key_check(check_key, prefix)):
            raise BackupKeyInvalid(
                "BACKUP_ENCRYPTION_KEY is not the key this backup was encrypted with "
                "(or the artifact's header is damaged)"
            )
        self._header = header
        self._chunk_size = chunk_size
        self._index = 0
        self._last_seen = False
        self._plain = b""
        self._offset = 0

    def readable(self) -> bool:
        return True

    def _read_exact(self, size: int) -> bytes:
        parts = []
        remaining = size
        while remaining:
            part = self._source.read(remaining)
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)

    def _next_chunk(self) -> bytes | None:
        if self._last_seen:
            if self._source.read(1):
                raise BackupCorrupt("encrypted backup has data after its last chunk")
            return None
        head = self._read_exact(_CHUNK_HEAD.size)
        if len(head) < _CHUNK_HEAD.size:
            raise BackupCorrupt(
                f"encrypted backup is truncated: it ends at chunk {self._index} "
                "before its last chunk"
            )
        nonce, length = _CHUNK_HEAD.unpack(head)
        if not _TAG <= length <= self._chunk_size + _TAG:
            raise BackupCorrupt(f"encrypted backup chunk {self._index} has an invalid length")
        sealed = self._read_exact(length)
        if len(sealed) < length:
            raise BackupCorrupt(f"encrypted backup is truncated inside chunk {self._index}")
        plain = self._open(nonce, sealed)
        self._index += 1
        return plain

    def _open(self, nonce: bytes, sealed: bytes) -> bytes:
        for last in (False, True):
            try:
                plain = self._aead.decrypt(nonce, sealed, _aad(self._header, self._index, last))
            except InvalidTag:
                continue
            self._last_seen = last
            return plain
        raise BackupCorrupt(
            f"encrypted backup chunk {self._index} fails authentication: "
            "it was altered, reordered or taken from another backup"
        )

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while self._offset >= len(self._plain):
            chunk = self._next_chunk()
            if chunk is None:
                return 0
            self._plain, self._offset = chunk, 0
        n = min(len(buffer), len(self._plain) - self._offset)
        buffer[:n] = self._plain[self._offset : self._offset + n]
        self._offset += n
        return n

    def drain(self) -> None:
        """Read to the end, so a missing last chunk or trailing data is reported."""
        while self._next_chunk() is not None:
            pass
        self._plain, self._offset = b"", 0
