"""Build a model archive: a reproducible ``tar.gz`` with ``manifest.json`` first.

Layout of ``model.tar.gz``:

* a POSIX (pax) tar stream: ``manifest.json`` first, then every file of the model directory in
  byte order of its UTF-8 path; regular files only (no directory, link or device entries),
  mode 0644, owner 0:0 with empty user/group names, mtime fixed at 1980-01-01;
* compressed as a sequence of gzip members (RFC 1952 allows any number), each holding 4 MiB
  of the tar stream. Each member's header carries an ``AG`` extra field with the member's
  compressed length (as BGZF does), so a verifier can inflate members on every core at once;
  to ``gzip``/``tar -xzf`` it is an ordinary ``.tar.gz``.
* each member is deflated at level 1 when a sample of it shrinks by 10% or more (JSON,
  vocabularies, sparse tensors) and stored (deflate level 0) otherwise: float weights shrink by
  5-8% at any level, and inflating them costs about five times more than reading stored
  blocks, so compressing them would make every verification several times slower for a few
  percent of size. Verification time is then bounded by hashing, not by inflation.

The same directory always gives the same bytes with the same zlib build (gzip headers carry no
name or time; the tar stream is fully determined by the files).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tarfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from aegis.registry.errors import ManifestMismatch, ModelSourceInvalid, RegistryError
from aegis.registry.hashing import available_cores, sha256_files

MANIFEST_NAME = "manifest.json"
MAX_NAME_BYTES = 255  # one path segment: NAME_MAX on Linux and macOS
MANIFEST_FORMAT = "aegis.model/v1"
FIXED_MTIME = 315532800  # 1980-01-01T00:00:00Z, the reproducible-builds convention
FILE_MODE = 0o644
BLOCK_SIZE = 4 << 20  # uncompressed bytes per gzip member
COMPRESS_LEVEL = 1
SAMPLE_BYTES = 64 << 10
WORTH_COMPRESSING = 0.9  # deflate a block only when it shrinks by at least 10%
GZIP_EXTRA_ID = b"AG"
# ID1 ID2 CM FLG(FEXTRA) MTIME(0) XFL(0) OS(255) | XLEN(8) | 'A' 'G' LEN(4) member_size(u32)
_GZIP_HEADER = struct.Struct("<2sBBIBBH2sHI")
GZIP_HEADER_SIZE = _GZIP_HEADER.size  # 20
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
READ_CHUNK = 1 << 20

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelManifest:
    name: str
    version: str
    files: tuple[ManifestEntry, ...]

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> bytes:
        document = {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "version": self.version,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }
        return (json.dumps(document, indent=2, ensure_ascii=True) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes) -> ModelManifest:
        """Parse and check ``manifest.json`` (raises :class:`ManifestMismatch`)."""
        try:
            doc = json.loads(data)
            if doc["format"] != MANIFEST_FORMAT:
                raise ManifestMismatch(f"unknown manifest format {doc['format']!r}")
            files = tuple(
                ManifestEntry(path=str(f["path"]), size=int(f["size"]), sha256=str(f["sha256"]))
                for f in doc["files"]
            )
            manifest = cls(name=str(doc["name"]), version=str(doc["version"]), files=files)
        # OverflowError: a size of 1e999 (infinity); RecursionError: arrays nested too deep.
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
            raise ManifestMismatch("manifest.json is not a valid Aegis model manifest") from None
        if not (_NAME_RE.fullmatch(manifest.name) and _VERSION_RE.fullmatch(manifest.version)):
            # They name the loader's cache folder and the registry's keys: never a path.
            raise ManifestMismatch("manifest.json names an invalid model name or version")
        paths = [f.path for f in files]
        if len(set(paths)) != len(paths) or MANIFEST_NAME in paths:
            raise ManifestMismatch("manifest.json lists a path twice or lists itself")
        for entry in files:
            if entry.size < 0 or not re.fullmatch(r"[0-9a-f]{64}", entry.sha256):
                raise ManifestMismatch(f"manifest entry for {entry.path!r} is malformed")
        return manifest


def check_name_version(name: str, version: str) -> None:
    if not _NAME_RE.fullmatch(name):
        raise ModelSourceInvalid(f"model name {name!r} must match {_NAME_RE.pattern}")
    if not _VERSION_RE.fullmatch(version):
        raise ModelSourceInvalid(f"model version {version!r} must match {_VERSION_RE.pattern}")


def check_member_path(path: str) -> str | None:
    """Why ``path`` is unsafe as an archive member name, or None when it is safe."""
    if not path or path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "absolute or empty path"
    if "\\" in path or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return "backslash or control character in path"
    parts = path.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        return "'..', '.' or empty path segment"
    try:  # a tar name's undecodable bytes are \udc80-\udcff; a manifest may hold any surrogate
        sizes = [len(part.encode("utf-8", "surrogateescape")) for part in parts]
    except UnicodeEncodeError:
        return "a lone surrogate in path (no file system stores it)"
    if any(size > MAX_NAME_BYTES for size in sizes):
        return f"a path segment longer than {MAX_NAME_BYTES} bytes (no file system stores it)"
    return None


def collect_files(root: Path) -> list[tuple[str, Path]]:
    """``(archive path, file)`` for every regular file under ``root``, sorted; refuses links
    and a ``root`` holding no file at all."""
    if not root.is_dir():
        raise ModelSourceInvalid(f"{root} is not a directory")
    found: list[tuple[str, Path]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                rel = path.relative_to(root).as_posix()
                if entry.is_symlink():
                    raise ModelSourceInvalid(f"{rel} is a symbolic link; models hold files only")
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                elif entry.is_file(follow_symlinks=False):
                    problem = check_member_path(rel)
                    if problem:
                        raise ModelSourceInvalid(f"cannot package {rel!r}: {problem}")
                    found.append((rel, path))
                else:
                    raise ModelSourceInvalid(f"{rel} is not a regular file")
    if any(rel == MANIFEST_NAME for rel, _ in found):
        raise ModelSourceInvalid(f"{MANIFEST_NAME} at the model root is reserved for Aegis")
    if not found:  # empty folders are not kept: an archive of none would be a model of nothing
        raise ModelSourceInvalid(f"{root} holds no file to package")
    return sorted(found, key=lambda item: item[0].encode("utf-8", "surrogateescape"))


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, FIXED_MTIME, FILE_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _tar_stream(
    manifest_bytes: bytes, files: list[tuple[str, Path, os.stat_result]]
) -> Iterator[bytes]:
    yield _tar_header(MANIFEST_NAME, len(manifest_bytes))
    yield manifest_bytes + _padding(len(manifest_bytes))
    for rel, path, before in files:
        yield _tar_header(rel, before.st_size)
        written = 0
        with path.open("rb") as fh:
            while chunk := fh.read(READ_CHUNK):
                written += len(chunk)
                yield chunk
            after = os.fstat(fh.fileno())
        if written != before.st_size or after.st_mtime_ns != before.st_mtime_ns:
            raise ModelSourceInvalid(f"{rel} changed while the archive was being built")
        yield _padding(written)
    end = 2 * tarfile.BLOCKSIZE
    yield b"\0" * end
    # tar(1) pads archives to a 10 KiB record; so do we, so GNU tar reads it without warning.
    # (The stream length so far is a multiple of 512; the padding is fully determined.)


def _blocks(parts: Iterator[bytes], block_size: int) -> Iterator[bytes]:
    """Re-chunk the tar stream into ``block_size`` pieces, then pad to a 10 KiB record."""
    pending = bytearray()
    total = 0
    for part in parts:
        pending += part
        total += len(part)
        while len(pending) >= block_size:
            yield bytes(pending[:block_size])
            del pending[:block_size]
    pending += b"\0" * (-total % tarfile.RECORDSIZE)
    if pending:
        yield bytes(pending)


def choose_level(block: bytes) -> int:
    """Deflate level 1 when a sample of ``block`` shrinks by 10% or more, else 0 (stored).

    Weights (float tensors) shrink by a few percent at any level while inflating them costs
    five times more than copying stored blocks; JSON, vocabularies and sparse tensors shrink
    a lot. Three 64 KiB slices decide, so the choice depends on the data alone.
    """
    if len(block) <= 3 * SAMPLE_BYTES:
        samples = [block]
    else:
        middle = len(block) // 2
        samples = [
            block[:SAMPLE_BYTES],
            block[middle : middle + SAMPLE_BYTES],
            block[-SAMPLE_BYTES:],
        ]
    raw = sum(len(s) for s in samples)
    packed = sum(len(zlib.compress(s, COMPRESS_LEVEL)) for s in samples)
    return COMPRESS_LEVEL if packed <= raw * WORTH_COMPRESSING else 0


def gzip_member(block: bytes, level: int | None = None) -> bytes:
    """One gzip member holding ``block``, with the ``AG`` length field in its header."""
    if level is None:
        level = choose_level(block)
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = compressor.compress(block) + compressor.flush()
    trailer = struct.pack("<II", zlib.crc32(block), len(block) & 0xFFFFFFFF)
    size = GZIP_HEADER_SIZE + len(body) + len(trailer)
    header = _GZIP_HEADER.pack(b"\x1f\x8b", 8, 4, 0, 0, 255, 8, GZIP_EXTRA_ID, 4, size)
    return header + body + trailer


def parse_member_size(header: bytes) -> int | None:
    """The member length from an Aegis gzip header, or None for any other gzip header."""
    if len(header) < GZIP_HEADER_SIZE:
        return None
    magic, cm, flg, _mtime, _xfl, _os, xlen, sub, sublen, size = _GZIP_HEADER.unpack_from(header)
    if (magic, cm, flg, xlen, sub, sublen) != (b"\x1f\x8b", 8, 4, 8, GZIP_EXTRA_ID, 4):
        return None
    return int(size)


def hash_files(
    files: list[tuple[str, Path]], *, workers: int | None = None, progress: Progress | None = None
) -> dict[str, str]:
    """SHA-256 (hex) of each file, hashing several files at once."""
    digests = sha256_files([path for _, path in files], workers=workers, progress=progress)
    return {rel: digests[path].hex() for rel, path in files}


@dataclass(frozen=True)
class BuiltArchive:
    path: Path
    sha256: str
    size: int
    manifest: ModelManifest


def build_archive(
    source: Path,
    out: Path,
    *,
    name: str,
    version: str,
    progress: Progress | None = None,
    workers: int | None = None,
) -> BuiltArchive:
    """Package ``source`` into ``out`` (written to a temporary name, then renamed)."""
    check_name_version(name, version)
    if out.is_dir():
        raise RegistryError(
            f"{out} is a folder: name the archive file, such as {out / 'model.tar.gz'}"
        )
    listed = collect_files(source)
    stats = [(rel, path, path.stat()) for rel, path in listed]
    digests = hash_files(listed, workers=workers, progress=progress)
    manifest = ModelManifest(
        name=name,
        version=version,
        files=tuple(ManifestEntry(rel, st.st_size, digests[rel]) for rel, _, st in stats),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    digest = hashlib.sha256()
    size = 0
    pool_size = workers or available_cores()
    try:
        with partial.open("wb") as fh, ThreadPoolExecutor(max_workers=pool_size) as pool:
            pending: deque[tuple[Future[bytes], int]] = deque()
            for block in _blocks(_tar_stream(manifest.to_json(), stats), BLOCK_SIZE):
                pending.append((pool.submit(gzip_member, block), len(block)))
                if len(pending) >= 2 * pool_size:
                    size += _write(fh, *pending.popleft(), digest, progress)
            while pending:
                size += _write(fh, *pending.popleft(), digest, progress)
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BuiltArchive(path=out, sha256=digest.hexdigest(), size=size, manifest=manifest)


def _write(
    fh: BinaryIO, member: Future[bytes], raw: int, digest: Any, progress: Progress | None
) -> int:
    data = member.result()
    fh.write(data)
    digest.update(data)
    if progress is not None:
        progress(raw)
    return len(data)
