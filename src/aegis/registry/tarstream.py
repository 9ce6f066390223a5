"""Read a model archive in one pass, on every core, in bounded memory.

One reader thread reads the file once. Every byte it reads goes to a hashing thread (the
SHA-256 the signature covers) and, member by member, to a pool that inflates the gzip members
in parallel (Aegis archives carry each member's length in its header, see ``archive.py``; any
other gzip stream is inflated sequentially). The calling thread takes the inflated blocks in
order, parses the tar stream without copying, and hands each member's bytes to a
:class:`MemberHandler` (which hashes members, checks them and may write them out).

Nothing is trusted before it is checked: every gzip member is bounded in size, the total and the
expansion ratio are bounded, and tar headers are validated before their data is read.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import struct
import tarfile
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aegis.registry.archive import GZIP_HEADER_SIZE, parse_member_size
from aegis.registry.errors import ArchiveCorrupt, ArchiveUnsafe
from aegis.registry.hashing import available_cores

READ_CHUNK = 4 << 20
MAX_GZIP_MEMBER_OUTPUT = 16 << 20
# Stored deflate adds 5 bytes per 64 KiB: a member holding 16 MiB is never this large.
MAX_GZIP_MEMBER_INPUT = 17 << 20
MAX_META_BYTES = 1 << 20  # pax extended headers and GNU long names
# A record's length fits the 1 MiB bound in 7 digits (more would also overflow int()'s limit).
_PAX_RECORD = re.compile(rb"(\d{1,7}) ([^=]+)=")

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what an archive may expand to (the defaults suit multi-gigabyte models)."""

    max_total_bytes: int = 64 << 30
    max_ratio: float = 100.0  # uncompressed bytes per compressed byte
    ratio_floor_bytes: int = 64 << 20  # small archives of text may expand more than max_ratio
    max_members: int = 100_000
    max_path_length: int = 1024
    max_manifest_bytes: int = 16 << 20


class MemberHandler(Protocol):
    def begin(self, name: str, size: int, kind: str, linkname: str) -> None: ...
    def data(self, chunk: memoryview) -> None: ...
    def end(self) -> None: ...
    def finish(self) -> None: ...


@dataclass(frozen=True)
class ScanResult:
    digest: bytes  # SHA-256 of the compressed file: what the signature covers
    compressed_size: int
    uncompressed_size: int


# --- gzip -------------------------------------------------------------------------------------
def inflate_member(body: bytes) -> bytes:
    """Inflate one Aegis gzip member (``body`` = deflate data + CRC32 + ISIZE)."""
    inflater = zlib.decompressobj(-15)
    try:
        out = inflater.decompress(body, MAX_GZIP_MEMBER_OUTPUT + 1)
    except zlib.error as exc:
        raise ArchiveCorrupt(f"corrupt gzip data: {exc}") from None
    if not inflater.eof:
        if len(out) > MAX_GZIP_MEMBER_OUTPUT:
            raise ArchiveUnsafe("a gzip member expands past 16 MiB (compression bomb)")
        raise ArchiveCorrupt("gzip member is truncated")
    trailer = inflater.unused_data
    if len(trailer) != 8:
        raise ArchiveCorrupt("gzip member has a malformed trailer")
    # The CRC32 is not recomputed: the signature's SHA-256 covers every compressed byte and the
    # manifest's SHA-256 every member, so a CRC would add cost and no assurance.
    (isize,) = struct.unpack_from("<I", trailer, 4)
    if isize != len(out) & 0xFFFFFFFF:
        raise ArchiveCorrupt("gzip member's length does not match its trailer")
    return out


def _done(value: bytes) -> Future[bytes]:
    future: Future[bytes] = Future()
    future.set_result(value)
    return future


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class _Reader(threading.Thread):
    """Reads the file once; feeds the hash queue and the ordered queue of inflated blocks."""

    def __init__(
        self,
        fd: int,
        size: int,
        *,
        pool: ThreadPoolExecutor,
        blocks: queue.Queue[Any],
        to_hash: queue.Queue[bytes | None],
        stop: threading.Event,
        progress: Progress | None,
    ) -> None:
        super().__init__(name="aegis-archive-reader", daemon=True)
        self._fd, self._size, self._pool = fd, size, pool
        self._blocks, self._to_hash, self._halt = blocks, to_hash, stop
        self._progress = progress

    def run(self) -> None:
        try:
            self._read_members()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(_Failure(exc))
        finally:
            self._put(_END)
            self._to_hash.put(None)

    def _put(self, item: object) -> None:
        while not self._halt.is_set():
            try:
                self._blocks.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read(self, size: int) -> bytes:
        parts = []
        remaining = size
        while remaining:
            data = os.read(self._fd, min(remaining, READ_CHUNK))
            if not data:
                break
            parts.append(data)
            remaining -= len(data)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if data:
            self._to_hash.put(data)
            if self._progress is not None:
                self._progress(len(data))
        return data

    def _read_members(self) -> None:
        offset = 0
        while offset < self._size and not self._halt.is_set():
            head = self._read(min(GZIP_HEADER_SIZE, self._size - offset))
            member_size = parse_member_size(head)
            if member_size is None:
                self._read_sequential(head)
                return
            if member_size > MAX_GZIP_MEMBER_INPUT:
                raise ArchiveUnsafe("a gzip member claims more than 17 MiB (refused unread)")
            if member_size < GZIP_HEADER_SIZE + 10 or offset + member_size > self._size:
                raise ArchiveCorrupt("gzip member is truncated (archive cut short?)")
            body = self._read(member_size - GZIP_HEADER_SIZE)
            if len(body) != member_size - GZIP_HEADER_SIZE:
                raise ArchiveCorrupt("gzip member is truncated (archive cut short?)")
            offset += member_size
            self._put(self._pool.submit(inflate_member, body))
        if offset == 0:
            raise ArchiveCorrupt("archive is empty")

    def _read_sequential(self, data: bytes) -> None:
        """Any other gzip stream (e.g. from ``tar czf``): inflate here, one member after another."""
        inflater: Any = None
        while data and not self._halt.is_set():
            while data:
                if inflater is None or inflater.eof:
                    inflater = zlib.decompressobj(31)
                try:
                    out = inflater.decompress(data, READ_CHUNK)
                except zlib.error as exc:
                    raise ArchiveCorrupt(f"corrupt gzip data: {exc}") from None
                if out:
                    self._put(_done(out))
                data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
            data = self._read(READ_CHUNK)
        if inflater is None or not inflater.eof:
            raise ArchiveCorrupt("gzip stream is truncated (archive cut short?)")


def _hash_worker(to_hash: queue.Queue[bytes | None], digest: Any) -> None:
    while (data := to_hash.get()) is not None:
        digest.update(data)


# --- tar --------------------------------------------------------------------------------------
def _parse_pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos:].strip(b"\0") == b"":
            break
        match = _PAX_RECORD.match(data, pos)
        if not match:
            raise ArchiveCorrupt("malformed pax extended header")
        length = int(match.group(1))
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1 : end] != b"\n":
            raise ArchiveCorrupt("malformed pax extended header record")
        key = match.group(2).decode("utf-8", "surrogateescape")
        records[key] = data[match.end() : end - 1].decode("utf-8", "surrogateescape")
        pos = end
    return records


_KINDS = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
}


class TarParser:
    """Incremental tar reader: ``feed`` it blocks; it calls the handler, never copies data."""

    def __init__(self, handler: MemberHandler) -> None:
        self._handler = handler
        self._header = bytearray()
        self._left = 0  # data bytes left in the current member
        self._pad = 0  # padding bytes left after it
        self._meta: bytearray | None = None  # collecting a pax header or GNU long name
        self._meta_type = b""
        self._pax: dict[str, str] = {}
        self._longname: str | None = None
        self._in_member = False
        self.ended = False

    def feed(self, block: bytes) -> None:
        view = memoryview(block)
        pos, size = 0, len(view)
        while pos < size:
            if self.ended:
                if any(view[pos:]):
                    raise ArchiveCorrupt("data after the end-of-archive marker")
                return
            if self._left:
                take = min(self._left, size - pos)
                part = view[pos : pos + take]
                if self._meta is not None:
                    self._meta += part
                else:
                    self._handler.data(part)
                pos += take
                self._left -= take
                if not self._left:
                    self._end_member()
            elif self._pad:
                take = min(self._pad, size - pos)
                pos += take
                self._pad -= take
            else:
                take = min(tarfile.BLOCKSIZE - len(self._header), size - pos)
                self._header += view[pos : pos + take]
                pos += take
                if len(self._header) == tarfile.BLOCKSIZE:
                    header = bytes(self._header)
                    self._header.clear()
                    self._start_member(header)

    def close(self) -> None:
        if not self.ended or self._left or self._header:
            raise ArchiveCorrupt("tar stream is truncated (no end-of-archive marker)")
        self._handler.finish()

    def _start_member(self, header: bytes) -> None:
        if not any(header):
            if self._meta_type or self._pax or self._longname is not None:
                raise ArchiveCorrupt("tar stream ends inside an extended header")
            self.ended = True
            return
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise ArchiveCorrupt(f"malformed tar header: {exc}") from None
        size = info.size
        if info.type in (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME):
            # A base-256 size can be negative: the parser would step back over it for ever.
            if not 0 <= size <= MAX_META_BYTES:
                raise ArchiveUnsafe("tar extended header size is negative or over 1 MiB")
            self._meta, self._meta_type = bytearray(), info.type
        elif info.type == tarfile.XGLTYPE:
            raise ArchiveUnsafe("global pax headers are not allowed in model archives")
        else:
            name = self._pax.get("path", self._longname or info.name)
            linkname = self._pax.get("linkpath", info.linkname)
            if "size" in self._pax:
                try:
                    size = int(self._pax["size"])
                except ValueError:
                    raise ArchiveCorrupt("malformed pax size") from None
            if size < 0:
                raise ArchiveCorrupt("negative member size")
            self._pax, self._longname = {}, None
            kind = _KINDS.get(info.type, "special")
            if kind != "file" and size and kind != "special":
                raise ArchiveCorrupt(f"{kind} member {name!r} carries data")
            self._handler.begin(name, size, kind, linkname)
            self._in_member = True
        self._left, self._pad = size, -size % tarfile.BLOCKSIZE
        if not size:
            self._end_member()

    def _end_member(self) -> None:
        if self._meta is not None:
            data, kind = bytes(self._meta), self._meta_type
            self._meta, self._meta_type = None, b""
            if kind == tarfile.XHDTYPE:
                self._pax = _parse_pax(data)
            else:
                self._longname = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            return
        if self._in_member:
            self._in_member = False
            self._handler.end()


# --- the pipeline -----------------------------------------------------------------------------
def scan_archive(
    path: Path,
    handler: MemberHandler,
    *,
    limits: ArchiveLimits | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ScanResult:
    """Hash, inflate and parse the archive at ``path`` once, feeding ``handler``."""
    limits = limits or ArchiveLimits()
    cores = workers or available_cores()
    fd = os.open(path, os.O_RDONLY)
    stop = threading.Event()
    digest = hashlib.sha256()
    blocks: queue.Queue[Any] = queue.Queue(maxsize=2 * cores + 2)
    to_hash: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
    pool = ThreadPoolExecutor(max_workers=cores, thread_name_prefix="aegis-inflate")
    size = os.fstat(fd).st_size
    hasher = threading.Thread(target=_hash_worker, args=(to_hash, digest), daemon=True)
    reader = _Reader(
        fd, size, pool=pool, blocks=blocks, to_hash=to_hash, stop=stop, progress=progress
    )
    hasher.start()
    reader.start()
    try:
        parser = TarParser(handler)
        total = 0
        budget = max(limits.ratio_floor_bytes, limits.max_ratio * size)
        while (item := blocks.get()) is not _END:
            if isinstance(item, _Failure):
                raise item.exc
            block = item.result()
            total += len(block)
            if total > limits.max_total_bytes:
                raise ArchiveUnsafe(f"archive expands past {limits.max_total_bytes} bytes")
            if total > budget:
                raise ArchiveUnsafe(
                    f"archive expands more than {limits.max_ratio:g}x (compression bomb)"
                )
            parser.feed(block)
        parser.close()
    finally:
        stop.set()  # the reader stops at the next member; its queue puts give up
        _drain(blocks)
        reader.join()
        hasher.join()  # the reader always ends the hash queue
        pool.shutdown(wait=True, cancel_futures=True)
        os.close(fd)
    return ScanResult(digest=digest.digest(), compressed_size=size, uncompressed_size=total)


def _drain(q: queue.Queue[Any]) -> None:
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, Future):
            item.cancel()
