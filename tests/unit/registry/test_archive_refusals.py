"""Every refusal, each on an archive the test builds itself; nothing lands outside the target.

Archives are made both as ``aegis model build`` makes them (gzip members with a length field,
inflated in parallel) and as ``tar czf`` does (one gzip stream, inflated sequentially).
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from aegis.registry import service
from aegis.registry.archive import gzip_member
from aegis.registry.errors import (
    ArchiveCorrupt,
    ArchiveUnsafe,
    ManifestMismatch,
    RegistryError,
    SignatureInvalid,
    UntrustedKey,
)
from aegis.registry.tarstream import ArchiveLimits
from tests.unit.registry.builders import (
    Member,
    keyset,
    listing,
    manifest_bytes,
    model_archive,
    new_key,
    sign,
    tar_bytes,
)

GOOD = {"config.json": b'{"a": 1}', "weights.safetensors": b"\x08\x00" * 500}
KEY = new_key()
TRUSTED = keyset(KEY)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _npy_v2(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=(2, 0), allow_pickle=True)
    return buf.getvalue()


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, w=np.arange(3, dtype=np.float32))
    return buf.getvalue()


def _torch_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    return buf.getvalue()


Builder = Callable[[Path, bool], Path]


def _with_extra(*extra: Member) -> Builder:
    return lambda tmp, plain: model_archive(tmp, GOOD, extra=list(extra), plain=plain)


def _with_files(files: dict[str, bytes]) -> Builder:
    return lambda tmp, plain: model_archive(tmp, files, plain=plain)


def _manifest_lists(
    files: dict[str, bytes], actual: dict[str, bytes], *, name: str = "demo", version: str = "1"
) -> Builder:
    def build(tmp: Path, plain: bool) -> Path:
        manifest = manifest_bytes(files, name=name, version=version)
        return model_archive(tmp, actual, manifest=manifest, plain=plain)

    return build


def _manifest_text(text: bytes) -> Builder:
    return lambda tmp, plain: model_archive(tmp, GOOD, manifest=text, plain=plain)


def _raw(members: list[Member]) -> Builder:
    def build(tmp: Path, plain: bool) -> Path:
        raw = tar_bytes(members)
        path = tmp / "model.tar.gz"
        path.write_bytes(gzip.compress(raw, mtime=0) if plain else gzip_member(raw))
        return path

    return build


def _negative_size(kind: bytes) -> Builder:
    """An extended header (pax or GNU long name) whose base-256 size field says -512."""

    def build(tmp: Path, plain: bool) -> Path:
        info = tarfile.TarInfo("././@PaxHeader" if kind == tarfile.XHDTYPE else "././@LongLink")
        info.type = kind
        header = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
        header[124:136] = b"\xff" + (256**11 - 512).to_bytes(11, "big")
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % sum(header)
        raw = bytes(header) + tar_bytes([Member("manifest.json", manifest_bytes(GOOD))])
        path = tmp / "model.tar.gz"
        path.write_bytes(gzip.compress(raw, mtime=0) if plain else gzip_member(raw))
        return path

    return build


def _pax_records(records: bytes) -> Builder:
    """A pax extended header holding ``records`` as written, before the manifest."""

    def build(tmp: Path, plain: bool) -> Path:
        info = tarfile.TarInfo("././@PaxHeader")
        info.type, info.size = tarfile.XHDTYPE, len(records)
        head = info.tobuf(format=tarfile.USTAR_FORMAT) + records + bytes(-len(records) % 512)
        raw = head + tar_bytes([Member("manifest.json", manifest_bytes(GOOD))])
        path = tmp / "model.tar.gz"
        path.write_bytes(gzip.compress(raw, mtime=0) if plain else gzip_member(raw))
        return path

    return build


CASES: dict[str, tuple[Builder, type[RegistryError]]] = {
    "pax record length of 5000 digits": (_pax_records(b"9" * 5000 + b" path=x\n"), ArchiveCorrupt),
    "pax header with a negative size": (_negative_size(tarfile.XHDTYPE), ArchiveUnsafe),
    "long-name header with a negative size": (
        _negative_size(tarfile.GNUTYPE_LONGNAME),
        ArchiveUnsafe,
    ),
    "path segment longer than a file system allows": (
        _with_files({**GOOD, "w" * 300 + ".json": b"{}"}),
        ArchiveUnsafe,
    ),
    "manifest version is a path": (
        _manifest_lists(GOOD, GOOD, version="../../../escaped"),
        ManifestMismatch,
    ),
    "manifest name is a path": (_manifest_lists(GOOD, GOOD, name="../../x"), ManifestMismatch),
    "path traversal": (_with_extra(Member("../evil.txt", b"pwned")), ArchiveUnsafe),
    "nested traversal": (_with_extra(Member("a/../../evil.txt", b"pwned")), ArchiveUnsafe),
    "absolute path": (_with_extra(Member("/tmp/aegis-evil.txt", b"pwned")), ArchiveUnsafe),
    "symlink escape": (
        _with_extra(
            Member("escape", type=tarfile.SYMTYPE, linkname=".."),
            Member("escape/evil.txt", b"pwned"),
        ),
        ArchiveUnsafe,
    ),
    "hard link": (
        _with_extra(Member("hard", type=tarfile.LNKTYPE, linkname="/etc/passwd")),
        ArchiveUnsafe,
    ),
    "fifo": (_with_extra(Member("pipe", type=tarfile.FIFOTYPE)), ArchiveUnsafe),
    "device": (_with_extra(Member("dev", type=tarfile.CHRTYPE)), ArchiveUnsafe),
    "pickle file": (_with_files({**GOOD, "model.pkl": pickle.dumps([1, 2])}), ArchiveUnsafe),
    "pickle magic in .bin": (
        _with_files({**GOOD, "pytorch_model.bin": pickle.dumps({"w": [1.0]}, protocol=4)}),
        ArchiveUnsafe,
    ),
    "torch zip checkpoint": (_with_files({**GOOD, "model.pt": _torch_zip()}), ArchiveUnsafe),
    "object npy": (
        _with_files({**GOOD, "arr.npy": _npy(np.array([{"a": 1}], dtype=object))}),
        ArchiveUnsafe,
    ),
    "object npy, version 2 header": (
        _with_files({**GOOD, "arr.npy": _npy_v2(np.array([{"a": 1}], dtype=object))}),
        ArchiveUnsafe,
    ),
    "object dtype in a record npy": (
        _with_files({**GOOD, "arr.npy": _npy(np.zeros(2, dtype=[("w", "f4"), ("meta", "O")]))}),
        ArchiveUnsafe,
    ),
    "malformed npy header": (
        _with_files({**GOOD, "arr.npy": b"\x93NUMPY\x01\x00\x10\x00{'descr': <f4 garbage"}),
        ArchiveUnsafe,
    ),
    "npy magic under another name": (
        _with_files({**GOOD, "weights.dat": _npy(np.array([{"a": 1}], dtype=object))}),
        ArchiveUnsafe,
    ),
    "npz container": (_with_files({**GOOD, "weights.npz": _npz()}), ArchiveUnsafe),
    "duplicate member": (_with_extra(Member("config.json", b'{"a": 2}')), ArchiveUnsafe),
    "manifest lists an unsafe path": (
        _manifest_lists({**GOOD, "../evil.txt": b"pwned"}, GOOD),
        ArchiveUnsafe,
    ),
    "manifest size beyond any number": (
        _manifest_text(manifest_bytes(GOOD).replace(b'"size": 8', b'"size": 1e999')),
        ManifestMismatch,
    ),
    "manifest path that is not UTF-8 text": (
        _manifest_lists({**GOOD, "\ud800.json": b"{}"}, GOOD),
        ArchiveUnsafe,
    ),
    "manifest nested too deep": (_manifest_text(b"[" * 100_000 + b"]" * 100_000), ManifestMismatch),
    "file size differs from the manifest": (
        _manifest_lists(GOOD, {**GOOD, "config.json": b'{"a": 10}'}),
        ManifestMismatch,
    ),
    "member not in manifest": (_with_extra(Member("extra.json", b"{}")), ManifestMismatch),
    "file missing": (
        _manifest_lists({**GOOD, "gone.json": b"{}"}, GOOD),
        ManifestMismatch,
    ),
    "file changed": (
        _manifest_lists(GOOD, {**GOOD, "config.json": b'{"a": 9}'}),
        ManifestMismatch,
    ),
    "no manifest": (_raw([Member("config.json", b"{}")]), ManifestMismatch),
    "manifest not first": (
        _raw([Member("config.json", GOOD["config.json"]), Member("manifest.json", b"{}")]),
        ManifestMismatch,
    ),
}


@pytest.fixture(params=[False, True], ids=["aegis-gzip", "plain-gzip"])
def plain(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.mark.parametrize("case", sorted(CASES))
def test_signed_malicious_archive_is_refused_and_leaves_nothing(
    case: str, plain: bool, tmp_path: Path
) -> None:
    build, error = CASES[case]
    archive = build(tmp_path, plain)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    before = listing(tmp_path)
    with pytest.raises(error):
        service.verify_and_extract(archive, sign(archive, KEY), TRUSTED, sandbox / "model")
    assert listing(tmp_path) == before
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/aegis-evil.txt").exists()


@pytest.mark.parametrize(
    "case",
    [
        "path traversal",
        "symlink escape",
        "pickle file",
        "pax header with a negative size",
        "long-name header with a negative size",
        "path segment longer than a file system allows",
        "pax record length of 5000 digits",
        "manifest size beyond any number",
        "manifest nested too deep",
        "manifest path that is not UTF-8 text",
    ],
)
def test_unsigned_malicious_archive_reads_as_a_bad_signature(case: str, tmp_path: Path) -> None:
    archive = CASES[case][0](tmp_path, False)
    forged = sign(archive, new_key())
    with pytest.raises(SignatureInvalid):
        service.verify_archive(archive, forged, TRUSTED)


def test_good_archive_verifies_and_extracts(plain: bool, tmp_path: Path) -> None:
    files = {
        **GOOD,
        "arr.npy": _npy(np.arange(6, dtype=np.float32)),
        "arr2.npy": _npy_v2(np.zeros(2, dtype=[("w", "<f4"), ("b", "<i8")])),
        "sub/x.onnx": b"onnx",
    }
    archive = model_archive(tmp_path, files, plain=plain)
    verified = service.verify_and_extract(archive, sign(archive, KEY), TRUSTED, tmp_path / "out")
    assert {f.path for f in verified.manifest.files} == set(files)
    assert all((tmp_path / "out" / p).read_bytes() == d for p, d in files.items())


def test_signature_of_another_file_is_refused(tmp_path: Path) -> None:
    archive = model_archive(tmp_path, GOOD)
    other = model_archive(tmp_path, {"config.json": b"{}"}, name="other.tar.gz")
    with pytest.raises(SignatureInvalid):
        service.verify_archive(archive, sign(other, KEY), TRUSTED)


def test_signature_by_another_key_is_refused(tmp_path: Path) -> None:
    archive = model_archive(tmp_path, GOOD)
    stranger = new_key()
    with pytest.raises(SignatureInvalid):
        service.verify_archive(archive, sign(archive, stranger), TRUSTED)
    with pytest.raises(UntrustedKey):
        service.verify_archive(
            archive, sign(archive, stranger), TRUSTED, signer_key=stranger.public_key()
        )


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_truncated_gzip_is_refused(plain: bool, tmp_path: Path, cut: float) -> None:
    archive = model_archive(
        tmp_path, {**GOOD, "big.bin.safetensors": bytes(range(256)) * 40000}, plain=plain
    )
    data = archive.read_bytes()
    archive.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ArchiveCorrupt):
        service.verify_archive(archive, sign(archive, KEY), TRUSTED)
    with pytest.raises(SignatureInvalid):  # unsigned truncation: the signature step says so
        service.verify_archive(archive, sign(tmp_path / "model.tar.gz", new_key()), TRUSTED)


def test_tar_bomb_past_the_expansion_ratio_is_refused(plain: bool, tmp_path: Path) -> None:
    zeros = bytes(8 << 20)
    archive = model_archive(tmp_path, {"zeros.safetensors": zeros}, plain=plain)
    limits = ArchiveLimits(max_ratio=20, ratio_floor_bytes=1 << 20)
    sandbox = tmp_path / "sandbox"
    with pytest.raises(ArchiveUnsafe, match="expands more than"):
        service.verify_and_extract(
            archive, sign(archive, KEY), TRUSTED, sandbox / "out", limits=limits
        )
    assert list(sandbox.iterdir()) == []


def test_archive_past_the_total_size_limit_is_refused(tmp_path: Path) -> None:
    archive = model_archive(tmp_path, {"w.safetensors": bytes(range(256)) * 8192})
    with pytest.raises(ArchiveUnsafe):
        service.verify_archive(
            archive, sign(archive, KEY), TRUSTED, limits=ArchiveLimits(max_total_bytes=1 << 20)
        )


def test_single_gzip_member_expanding_past_its_bound_is_refused(tmp_path: Path) -> None:
    raw = tar_bytes(
        [
            Member("manifest.json", manifest_bytes({"z": bytes(20 << 20)})),
            Member("z", bytes(20 << 20)),
        ]
    )
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(gzip_member(raw))  # one member claiming the length field, 20 MiB inside
    with pytest.raises(ArchiveUnsafe, match="16 MiB"):
        service.verify_archive(archive, sign(archive, KEY), TRUSTED)


def test_garbage_after_the_gzip_stream_is_refused(plain: bool, tmp_path: Path) -> None:
    archive = model_archive(tmp_path, GOOD, plain=plain)
    archive.write_bytes(archive.read_bytes() + b"trailing garbage")
    with pytest.raises(ArchiveCorrupt):
        service.verify_archive(archive, sign(archive, KEY), TRUSTED)


def test_extraction_target_must_be_absent_or_empty(tmp_path: Path) -> None:
    archive = model_archive(tmp_path, GOOD)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(RegistryError):
        service.verify_and_extract(archive, sign(archive, KEY), TRUSTED, dest)
    assert listing(dest) == {"keep.txt"}


def test_gzip_member_claiming_a_huge_length_is_refused_unread(tmp_path: Path) -> None:
    import struct

    member = bytearray(gzip_member(tar_bytes([Member("manifest.json", b"{}")])))
    struct.pack_into("<I", member, 16, 0xFFFFFF00)  # the AG length field
    archive = tmp_path / "liar.tar.gz"
    archive.write_bytes(bytes(member) + bytes(1 << 20))
    with pytest.raises(ArchiveUnsafe, match="17 MiB"):
        service.verify_archive(archive, sign(archive, KEY), TRUSTED)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (ArchiveLimits(max_members=3), "more than 3 members"),
        (ArchiveLimits(max_path_length=12), "longer than 12"),
        (ArchiveLimits(max_manifest_bytes=64), "manifest.json is larger than the limit"),
    ],
    ids=["members", "name length", "manifest size"],
)
def test_archive_past_a_structural_limit_is_refused_and_leaves_nothing(
    limits: ArchiveLimits, message: str, tmp_path: Path
) -> None:
    files = {**GOOD, "sub/longer-name.json": b"{}", "x.json": b"{}"}
    archive = model_archive(tmp_path, files)
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    with pytest.raises(ArchiveUnsafe, match=message):
        service.verify_and_extract(
            archive, sign(archive, KEY), TRUSTED, sandbox / "out", limits=limits
        )
    assert list(sandbox.iterdir()) == []


def test_directory_entries_are_accepted_and_files_land_inside_them(tmp_path: Path) -> None:
    # tar czf writes a folder's own entry before its files; it carries no data
    files = {**GOOD, "sub/x.onnx": b"onnx"}
    members = [Member("manifest.json", manifest_bytes(files)), Member("sub", type=tarfile.DIRTYPE)]
    members += [Member(p, d) for p, d in sorted(files.items())]
    archive = _raw(members)(tmp_path, True)
    verified = service.verify_and_extract(archive, sign(archive, KEY), TRUSTED, tmp_path / "out")
    assert {f.path for f in verified.manifest.files} == set(files)
    assert (tmp_path / "out" / "sub" / "x.onnx").read_bytes() == b"onnx"
