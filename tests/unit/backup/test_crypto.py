"""Chunked AES-256-GCM: round trips, and every way to rearrange an artifact is refused."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.backup.crypto import HEADER_SIZE, DecryptingReader, EncryptingWriter
from aegis.backup.errors import BackupCorrupt, BackupKeyInvalid

KEY = "k" * 40
CHUNK = 64


def _encrypt(data: bytes, *, key: str = KEY, chunk: int = CHUNK) -> bytes:
    sink = io.BytesIO()
    writer = EncryptingWriter(sink, key, chunk_size=chunk)
    for start in range(0, len(data), 17):  # writes that do not line up with chunks
        writer.write(data[start : start + 17])
    writer.close()
    return sink.getvalue()


def _decrypt(blob: bytes, *, key: str = KEY) -> bytes:
    reader = DecryptingReader(io.BytesIO(blob), key)
    out = io.BufferedReader(reader).read()
    reader.drain()
    return out


def _split(blob: bytes) -> tuple[bytes, list[bytes]]:
    """(header, [chunk, ...]) of an encrypted artifact."""
    header, rest, chunks = blob[:HEADER_SIZE], blob[HEADER_SIZE:], []
    while rest:
        (length,) = struct.unpack(">I", rest[12:16])
        chunks.append(rest[: 16 + length])
        rest = rest[16 + length :]
    return header, chunks


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 3])
def test_round_trip_at_chunk_edges(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    assert _decrypt(_encrypt(data[:size])) == data[:size]


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=1000), st.integers(min_value=1, max_value=200))
def test_round_trip_any_data_any_chunk_size(data: bytes, chunk: int) -> None:
    assert _decrypt(_encrypt(data, chunk=chunk)) == data


def test_same_plaintext_encrypts_differently() -> None:
    assert _encrypt(b"x" * 100) != _encrypt(b"x" * 100)  # fresh salt and nonces


def test_wrong_key_is_reported_as_the_wrong_key() -> None:
    with pytest.raises(BackupKeyInvalid, match="not the key"):
        _decrypt(_encrypt(b"secret rows"), key="z" * 40)


def test_short_key_is_refused() -> None:
    with pytest.raises(BackupKeyInvalid, match="shorter than 32"):
        _encrypt(b"x", key="short")


def test_reordered_chunks_fail() -> None:
    header, chunks = _split(_encrypt(b"a" * 3 * CHUNK + b"b"))
    swapped = header + chunks[1] + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(BackupCorrupt, match="chunk 0 fails authentication"):
        _decrypt(swapped)


def test_truncation_at_a_chunk_boundary_fails() -> None:
    header, chunks = _split(_encrypt(b"a" * 3 * CHUNK + b"b"))
    assert len(chunks) == 4
    with pytest.raises(BackupCorrupt, match="truncated"):
        _decrypt(header + b"".join(chunks[:2]))


def test_truncation_inside_a_chunk_fails() -> None:
    blob = _encrypt(b"a" * 3 * CHUNK)
    with pytest.raises(BackupCorrupt, match="truncated"):
        _decrypt(blob[:-5])


def test_data_after_the_last_chunk_fails() -> None:
    header, chunks = _split(_encrypt(b"a" * 2 * CHUNK + b"b"))
    with pytest.raises(BackupCorrupt, match="after its last chunk"):
        _decrypt(header + b"".join(chunks) + chunks[0])


def test_a_flipped_bit_fails() -> None:
    blob = bytearray(_encrypt(b"a" * 2 * CHUNK))
    blob[HEADER_SIZE + 16 + 5] ^= 1
    with pytest.raises(BackupCorrupt, match="fails authentication"):
        _decrypt(bytes(blob))


def test_a_chunk_from_another_artifact_fails() -> None:
    header, chunks = _split(_encrypt(b"a" * 2 * CHUNK + b"b"))
    _, foreign = _split(_encrypt(b"a" * 2 * CHUNK + b"b"))
    with pytest.raises(BackupCorrupt, match="chunk 1 fails authentication"):
        _decrypt(header + chunks[0] + foreign[1] + chunks[2])


def test_a_tampered_header_fails() -> None:
    blob = bytearray(_encrypt(b"abc"))
    blob[20] ^= 1  # inside the salt: the key check no longer matches
    with pytest.raises(BackupKeyInvalid):
        _decrypt(bytes(blob))
