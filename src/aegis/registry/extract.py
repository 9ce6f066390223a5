"""What a model archive may contain, checked member by member, and safe extraction.

Refused (:class:`ArchiveUnsafe`): absolute paths, ``..``, symbolic and hard links, devices, FIFOs
and other special members, duplicate names (also case-insensitively), too many members, an
archive expanding past its size or ratio limit, and executable serialisation formats: pickle
files (``.pkl``/``.pickle``/``.joblib``/``.dill``, or any file starting with a pickle protocol
2-5 header), PyTorch zip checkpoints (``.pt``/``.pth``/``.bin``/``.ckpt`` that are zip files
holding pickles), ``.npz`` containers, and ``.npy`` arrays of ``object`` dtype. Models are data:
JSON, safetensors, ONNX, ``.npy`` of numeric dtypes.

Refused (:class:`ManifestMismatch`): no ``manifest.json`` as the first member, a member the
manifest does not list (or with another size or SHA-256), a listed file that is missing.

:func:`safe_extract` writes into a fresh temporary folder beside the destination and renames it
into place only when every check passed; on any failure the folder is removed, so nothing is
ever left outside the destination (nor a half-checked destination).
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from aegis.registry.archive import MANIFEST_NAME, ModelManifest, check_member_path
from aegis.registry.errors import ArchiveUnsafe, ManifestMismatch, RegistryError
from aegis.registry.tarstream import ArchiveLimits, Progress, ScanResult, scan_archive

ExtractLimits = ArchiveLimits
SNIFF_BYTES = 64 << 10
PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".dill"}
TORCH_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".mar"}
NPY_MAGIC = b"\x93NUMPY"


def sniff(name: str, head: bytes) -> str | None:
    """Why the file whose first bytes are ``head`` is refused, or None when it is data."""
    suffix = Path(name).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return f"pickle file ({suffix}); ship weights as safetensors, ONNX or .npy"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"pickle data (protocol {head[1]}); pickle runs code when loaded"
    if suffix in TORCH_SUFFIXES and head.startswith(b"PK\x03\x04"):
        return "PyTorch zip checkpoint (holds pickle); convert to safetensors"
    if suffix == ".npz":
        return ".npz container (may hold object arrays); ship .npy or safetensors"
    if suffix == ".npy" or head.startswith(NPY_MAGIC):
        return _npy_problem(head)
    return None


def _npy_problem(head: bytes) -> str | None:
    if not head.startswith(NPY_MAGIC) or len(head) < 10:
        return "malformed .npy file"
    major = head[6]
    if major == 1:
        (length,), start = struct.unpack_from("<H", head, 8), 10
    elif major in (2, 3) and len(head) >= 12:
        (length,), start = struct.unpack_from("<I", head, 8), 12
    else:
        return "unsupported .npy version"
    if start + length > len(head):
        return ".npy header is too long to check"
    try:
        header = ast.literal_eval(head[start : start + length].decode("latin-1"))
        descr = header["descr"]
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
        return "malformed .npy header"
    if _has_object_dtype(descr):
        return ".npy array of object dtype (loads through pickle)"
    return None


def _has_object_dtype(descr: Any) -> bool:
    if isinstance(descr, str):
        return "O" in descr
    if isinstance(descr, list | tuple):
        return any(_has_object_dtype(part) for part in descr)
    return True  # anything else is not a dtype numpy writes: refuse


@dataclass
class _Member:
    name: str
    size: int
    digest: Any = field(default_factory=hashlib.sha256)
    head: bytearray = field(default_factory=bytearray)
    sniffed: bool = False
    out: BinaryIO | None = None
    is_manifest: bool = False


class ArchivePolicy:
    """A :class:`~aegis.registry.tarstream.MemberHandler` enforcing the rules above.

    With ``root`` set, accepted members are also written under it (a folder the caller owns).
    """

    def __init__(self, limits: ArchiveLimits, root: Path | None = None) -> None:
        self._limits = limits
        self._root = root
        self.manifest: ModelManifest | None = None
        self._expected: dict[str, Any] = {}
        self._seen: set[str] = set()
        self._folded: set[str] = set()
        self._count = 0
        self._current: _Member | None = None

    # --- MemberHandler ---------------------------------------------------------------------
    def begin(self, name: str, size: int, kind: str, linkname: str) -> None:
        self._count += 1
        if self._count > self._limits.max_members:
            raise ArchiveUnsafe(f"archive has more than {self._limits.max_members} members")
        if len(name) > self._limits.max_path_length:
            raise ArchiveUnsafe(f"member name longer than {self._limits.max_path_length}")
        problem = check_member_path(name)
        if problem:
            raise ArchiveUnsafe(f"unsafe member {name!r}: {problem}")
        if kind == "symlink":
            raise ArchiveUnsafe(f"member {name!r} is a symbolic link (to {linkname!r})")
        if kind == "hardlink":
            raise ArchiveUnsafe(f"member {name!r} is a hard link (to {linkname!r})")
        if kind == "special":
            raise ArchiveUnsafe(f"member {name!r} is a device, FIFO or other special file")
        if kind == "dir":
            return
        folded = name.casefold()
        if folded in self._folded:
            raise ArchiveUnsafe(f"member {name!r} appears twice")
        self._folded.add(folded)
        if self.manifest is None:
            self._begin_manifest(name, size)
            return
        entry = self._expected.get(name)
        if entry is None:
            raise ManifestMismatch(f"member {name!r} is not listed in {MANIFEST_NAME}")
        if size != entry.size:
            raise ManifestMismatch(
                f"member {name!r} is {size} bytes; the manifest says {entry.size}"
            )
        self._current = _Member(name=name, size=size)

    def data(self, chunk: memoryview) -> None:
        member = self._current
        if member is None:
            return  # directory entries carry no data
        if member.is_manifest:
            member.head += chunk
            return
        member.digest.update(chunk)
        if member.sniffed:
            if member.out is not None:
                member.out.write(chunk)
            return
        member.head += chunk
        if len(member.head) >= min(member.size, SNIFF_BYTES):
            self._check_content(member)

    def end(self) -> None:
        member, self._current = self._current, None
        if member is None:
            return
        if member.is_manifest:
            self._end_manifest(bytes(member.head))
            return
        if not member.sniffed:
            self._check_content(member)
        if member.out is not None:
            member.out.close()
        expected = self._expected[member.name].sha256
        if not hmac.compare_digest(member.digest.hexdigest(), expected):
            raise ManifestMismatch(
                f"member {member.name!r} does not match its SHA-256 in the manifest"
            )
        self._seen.add(member.name)

    def finish(self) -> None:
        if self.manifest is None:
            raise ManifestMismatch(f"archive has no {MANIFEST_NAME}")
        missing = sorted(set(self._expected) - self._seen)
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise ManifestMismatch(f"files listed in the manifest are missing: {shown}")

    def close(self) -> None:
        """Close the file being written, if a failure interrupted a member."""
        if self._current is not None and self._current.out is not None:
            self._current.out.close()

    # --- helpers ---------------------------------------------------------------------------
    def _begin_manifest(self, name: str, size: int) -> None:
        if name != MANIFEST_NAME:
            raise ManifestMismatch(f"{MANIFEST_NAME} must be the archive's first member")
        if size > self._limits.max_manifest_bytes:
            raise ArchiveUnsafe(f"{MANIFEST_NAME} is larger than the limit")
        self._current = _Member(name=name, size=size, is_manifest=True)

    def _end_manifest(self, data: bytes) -> None:
        manifest = ModelManifest.parse(data)
        for entry in manifest.files:
            problem = check_member_path(entry.path)
            if problem:
                raise ArchiveUnsafe(f"manifest lists unsafe path {entry.path!r}: {problem}")
        if manifest.total_size > self._limits.max_total_bytes:
            raise ArchiveUnsafe(f"model is larger than {self._limits.max_total_bytes} bytes")
        self.manifest = manifest
        self._expected = {entry.path: entry for entry in manifest.files}

    def _check_content(self, member: _Member) -> None:
        problem = sniff(member.name, bytes(member.head))
        if problem:
            raise ArchiveUnsafe(f"member {member.name!r} refused: {problem}")
        member.sniffed = True
        if self._root is not None:
            member.out = _create_file(self._root, member.name)
            member.out.write(member.head)
        member.head = bytearray()


def _create_file(root: Path, name: str) -> BinaryIO:
    """Create ``root/name`` exclusively, never through a link (the name is already checked)."""
    parts = name.split("/")
    folder = root
    for part in parts[:-1]:
        folder = folder / part
        try:
            folder.mkdir(mode=0o755)
        except FileExistsError:
            if folder.is_symlink() or not folder.is_dir():
                raise ArchiveUnsafe(f"member {name!r} collides with a file") from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(folder / parts[-1], flags, 0o644)
    except FileExistsError:
        raise ArchiveUnsafe(f"member {name!r} collides with another member") from None
    return os.fdopen(fd, "wb")


@dataclass(frozen=True)
class ScannedArchive:
    scan: ScanResult
    manifest: ModelManifest


def check_archive(
    archive: Path,
    *,
    limits: ArchiveLimits | None = None,
    root: Path | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ScannedArchive:
    """One pass over ``archive``: every rule checked, optionally written under ``root``."""
    limits = limits or ArchiveLimits()
    policy = ArchivePolicy(limits, root)
    try:
        result = scan_archive(archive, policy, limits=limits, workers=workers, progress=progress)
    finally:
        policy.close()
    assert policy.manifest is not None  # finish() guarantees it
    return ScannedArchive(scan=result, manifest=policy.manifest)


def staging_dir(dest: Path) -> Path:
    """A fresh private folder beside ``dest`` (same file system, so the final rename is atomic)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RegistryError(f"extraction target {dest} exists and is not an empty folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))


def promote(staging: Path, dest: Path) -> Path:
    if dest.exists():
        dest.rmdir()  # empty, checked by staging_dir
    staging.chmod(0o755)
    staging.replace(dest)
    return dest


def safe_extract(
    archive: Path,
    dest: Path,
    limits: ArchiveLimits | None = None,
    *,
    progress: Progress | None = None,
) -> Path:
    """Extract a checked archive into ``dest`` (absent or empty); all or nothing.

    This does not check a signature: use ``aegis.registry.service.verify_and_extract`` to check
    the signature over the very bytes that are extracted.
    """
    staging = staging_dir(dest)
    try:
        check_archive(archive, limits=limits, root=staging, progress=progress)
        return promote(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
