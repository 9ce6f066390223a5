"""The backup artifact: a tar of JSON Lines per table plus a manifest, gzipped, maybe encrypted.

``aegis-<UTC timestamp>-<short id>.tar.gz[.enc]``::

    tables/<table>.jsonl   one JSON object per row, keys = the table's columns (codec.py);
                           one member per table of aegis.database.models.metadata, in FK order
    manifest.json          written last: format, created_at, source dialect, Alembic
                           revision(s), audit chain head, and per table its columns, row count,
                           size and SHA-256

Reading never extracts to disk: members are streamed, only regular files with the names above
are accepted (no links, no paths), each at most once, the manifest last and bounded in size.
A ``.enc`` artifact is the same bytes wrapped by :mod:`aegis.backup.crypto`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aegis.backup.crypto import DecryptingReader, EncryptingWriter, is_encrypted
from aegis.backup.errors import BackupCorrupt, BackupKeyInvalid

FORMAT = "aegis-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024 * 1024
READ_CHUNK = 1024 * 1024
NAME_RE = re.compile(r"^aegis-(?P<ts>\d{8}T\d{6}Z)-(?P<id>[0-9a-f]{8})\.tar\.gz(?P<enc>\.enc)?$")
MEMBER_RE = re.compile(r"^tables/(?P<table>[a-z_][a-z0-9_]{0,62})\.jsonl$")
_TS = "%Y%m%dT%H%M%SZ"
_FORMAT_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


# --- names -------------------------------------------------------------------------------------
def artifact_name(created_at: datetime, backup_id: str, *, encrypted: bool) -> str:
    name = f"aegis-{created_at.astimezone(UTC).strftime(_TS)}-{backup_id}.tar.gz"
    return name + ".enc" if encrypted else name


def parse_name(key: str) -> datetime | None:
    """The creation time in an artifact's name, or None when ``key`` is not an artifact name."""
    match = NAME_RE.fullmatch(key)
    if not match:
        return None
    return datetime.strptime(match["ts"], _TS).replace(tzinfo=UTC)


def member_name(table: str) -> str:
    return f"tables/{table}.jsonl"


# --- manifest ----------------------------------------------------------------------------------
class TableEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    columns: list[str]
    kinds: list[str]
    rows: int = Field(ge=0)
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class AuditHead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=0)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["aegis-backup"] = "aegis-backup"
    format_version: Literal[1] = 1
    backup_id: str = Field(pattern=r"^[0-9a-f]{8}$")
    created_at: datetime
    source_dialect: str
    aegis_version: str
    alembic_revisions: list[str]
    audit_head: AuditHead
    tables: list[TableEntry]

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def table(self, name: str) -> TableEntry:
        for entry in self.tables:
            if entry.name == name:
                return entry
        raise KeyError(name)


def parse_manifest(data: bytes) -> Manifest:
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BackupCorrupt(f"backup manifest is invalid at {where}: {first['msg']}") from None


# --- writing -----------------------------------------------------------------------------------
class _HashingSink(io.RawIOBase):
    """Counts and hashes the bytes of the artifact file as they are written; once ``discard`` is
    set (an aborted archive), drops them instead."""

    def __init__(self, sink: BinaryIO) -> None:
        super().__init__()
        self._sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.discard = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        if self.discard:
            return len(data)
        self.sha256.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)


class TableSpool:
    """One table's JSON Lines in a local file, hashed and counted as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = _create_private(path)
        self._sha = hashlib.sha256()
        self.rows = 0
        self.size = 0

    def write_row(self, row: dict[str, Any]) -> None:
        line = json.dumps(row, separators=(",", ":")).encode("ascii") + b"\n"
        self._fh.write(line)
        self._sha.update(line)
        self.rows += 1
        self.size += len(line)

    def close(self) -> str:
        self._fh.close()
        return self._sha.hexdigest()

    def abort(self) -> None:
        """Close and delete the spool file (a failed or interrupted backup)."""
        with contextlib.suppress(OSError):
            self._fh.close()
        self.path.unlink(missing_ok=True)


def _create_private(path: Path) -> BinaryIO:
    """A new file only its owner can read: the spool is plaintext even for an encrypted backup."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


class ArchiveWriter:
    """tar → gzip → (AES-256-GCM chunks when ``secret``) → ``path``."""

    def __init__(self, path: Path, *, secret: str | None, created_at: datetime) -> None:
        self._mtime = int(created_at.timestamp())
        self._file = _create_private(path)
        self._hashing = _HashingSink(self._file)
        self._enc = EncryptingWriter(self._hashing, secret) if secret else None
        sink: io.RawIOBase = self._enc or self._hashing
        self._gz = gzip.GzipFile(filename="", fileobj=sink, mode="wb", compresslevel=6, mtime=0)
        # Closed layer by layer in close(); stream mode: no seeking, one pass.
        self._tar = tarfile.open(  # noqa: SIM115
            fileobj=self._gz, mode="w|", format=tarfile.PAX_FORMAT
        )

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, self._mtime
        return info

    def add_file(self, name: str, path: Path) -> None:
        with path.open("rb") as fh:
            self._tar.addfile(self._info(name, path.stat().st_size), fh)

    def add_bytes(self, name: str, data: bytes) -> None:
        self._tar.addfile(self._info(name, len(data)), io.BytesIO(data))

    def close(self) -> tuple[str, int]:
        """Finish every layer; return the artifact's SHA-256 and size."""
        self._tar.close()
        self._gz.close()
        if self._enc is not None:
            self._enc.close()
        self._file.close()
        return self._hashing.sha256.hexdigest(), self._hashing.size

    def abort(self) -> None:
        """Give up on the artifact (the caller deletes it). Every layer is closed, top down, with
        its last bytes discarded: closing only the file left the tar and gzip streams open, and
        their finalizers then wrote to the closed file ("Exception ignored ... write to closed
        file" on Ctrl-C)."""
        self._hashing.discard = True
        for layer in (self._tar, self._gz, self._enc, self._file):
            if layer is not None:
                with contextlib.suppress(Exception):
                    layer.close()


# --- reading -----------------------------------------------------------------------------------
@contextlib.contextmanager
def format_errors() -> Iterator[None]:
    """Report a broken tar/gzip stream (truncated, garbled) as BackupCorrupt."""
    try:
        yield
    except _FORMAT_ERRORS as exc:
        raise BackupCorrupt(f"backup archive is damaged or truncated: {exc}") from None


def _plain_stream(
    raw: BinaryIO, *, secret: str | None, allow_unencrypted: bool
) -> tuple[BinaryIO, DecryptingReader | None]:
    head = raw.read(8)
    raw.seek(0)
    if is_encrypted(head):
        if secret is None:
            raise BackupKeyInvalid("backup is encrypted: set BACKUP_ENCRYPTION_KEY to restore it")
        reader = DecryptingReader(raw, secret)
        return io.BufferedReader(reader, READ_CHUNK), reader
    if head[:2] != b"\x1f\x8b":
        raise BackupCorrupt("not an Aegis backup (neither gzip nor an encrypted artifact)")
    if secret is not None and not allow_unencrypted:
        raise BackupKeyInvalid(
            "backup is not encrypted but BACKUP_ENCRYPTION_KEY is set: refusing an artifact "
            "nobody can have authenticated (pass --allow-unencrypted to restore it anyway)"
        )
    return raw, None


def iter_members(
    path: Path, *, secret: str | None, allow_unencrypted: bool = False
) -> Generator[tuple[str, IO[bytes]], None, None]:
    """Yield (name, stream) for each member in order; at the end check nothing follows."""
    with path.open("rb") as raw, format_errors():
        stream, decrypting = _plain_stream(raw, secret=secret, allow_unencrypted=allow_unencrypted)
        with (
            gzip.GzipFile(fileobj=stream, mode="rb") as gz,
            tarfile.open(fileobj=gz, mode="r|") as tar,
        ):
            seen: set[str] = set()
            for member in tar:
                _check_member(member, seen)
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - regular files always have one
                    raise BackupCorrupt(f"backup member {member.name!r} has no data")
                yield member.name, handle
            if MANIFEST not in seen:
                raise BackupCorrupt("backup has no manifest: the archive is truncated")
            while gz.read(READ_CHUNK):  # the gzip trailer's CRC and length are checked at its end
                pass
        if decrypting is not None:
            decrypting.drain()


def _check_member(member: tarfile.TarInfo, seen: set[str]) -> None:
    name = member.name
    if MANIFEST in seen:
        raise BackupCorrupt(f"backup member {name!r} follows the manifest")
    if not member.isreg():
        raise BackupCorrupt(f"backup member {name!r} is not a regular file")
    if name != MANIFEST and not MEMBER_RE.fullmatch(name):
        raise BackupCorrupt(f"unexpected backup member {name!r}")
    if name in seen:
        raise BackupCorrupt(f"backup member {name!r} appears twice")
    if name == MANIFEST and member.size > MAX_MANIFEST_BYTES:
        raise BackupCorrupt("backup manifest is too large")
    seen.add(name)


def read_manifest_member(handle: IO[bytes]) -> Manifest:
    return parse_manifest(handle.read(MAX_MANIFEST_BYTES + 1))


def iter_lines(handle: IO[bytes], where: str) -> Iterator[bytes]:
    """The member's lines (without newline), each bounded; a cut-off last line is corrupt."""
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if not line.endswith(b"\n"):
            if len(line) > MAX_LINE_BYTES:
                raise BackupCorrupt(f"{where}: a row is larger than {MAX_LINE_BYTES} bytes")
            raise BackupCorrupt(f"{where}: the last row is cut off")
        yield line[:-1]


def digest_member(handle: IO[bytes]) -> tuple[str, int, int]:
    """(SHA-256, rows, bytes) of a table member, streamed."""
    sha = hashlib.sha256()
    rows = size = 0
    last = b"\n"
    while chunk := handle.read(READ_CHUNK):
        sha.update(chunk)
        rows += chunk.count(b"\n")
        size += len(chunk)
        last = chunk[-1:]
    if last != b"\n":
        rows += 1  # a cut-off last row still counts, so the count check fails with the hash
    return sha.hexdigest(), rows, size


def verify_artifact(path: Path, *, secret: str | None, allow_unencrypted: bool = False) -> Manifest:
    """Read the whole artifact once: every member's SHA-256, size and row count must match the
    manifest, every table in the manifest must be present, and nothing else."""
    digests: dict[str, tuple[str, int, int]] = {}
    manifest: Manifest | None = None
    members = iter_members(path, secret=secret, allow_unencrypted=allow_unencrypted)
    with format_errors():
        for name, handle in members:
            if name == MANIFEST:
                manifest = read_manifest_member(handle)
            else:
                digests[name] = digest_member(handle)
    if manifest is None:  # pragma: no cover - iter_members refuses an archive without one
        raise BackupCorrupt("backup has no manifest")
    check_digests(manifest, digests)
    return manifest


def check_digests(manifest: Manifest, digests: dict[str, tuple[str, int, int]]) -> None:
    expected = {member_name(t.name): t for t in manifest.tables}
    if len(expected) != len(manifest.tables):
        raise BackupCorrupt("backup manifest lists a table twice")
    missing = sorted(set(expected) - set(digests))
    if missing:
        raise BackupCorrupt(f"backup is missing {', '.join(missing)} listed in its manifest")
    extra = sorted(set(digests) - set(expected))
    if extra:
        raise BackupCorrupt(f"backup has {', '.join(extra)}, which its manifest does not list")
    for member, entry in expected.items():
        sha, rows, size = digests[member]
        if not hmac.compare_digest(sha, entry.sha256) or size != entry.bytes:
            raise BackupCorrupt(f"{member}: SHA-256 does not match the manifest (altered)")
        if rows != entry.rows:
            raise BackupCorrupt(
                f"{member}: {rows} rows but the manifest says {entry.rows} (altered)"
            )
