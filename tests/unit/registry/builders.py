"""Small builders for registry tests: keys, model folders and hand-made (malicious) archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from aegis.registry.archive import BLOCK_SIZE, MANIFEST_FORMAT, gzip_member
from aegis.registry.keyset import KeySet
from aegis.registry.signing import sign_blob

DATA = Path(__file__).resolve().parents[2] / "data" / "cosign"


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def keyset(*keys: ec.EllipticCurvePrivateKey) -> KeySet:
    return KeySet.of(*(k.public_key() for k in keys))


def write_model(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def manifest_bytes(files: dict[str, bytes], *, name: str = "demo", version: str = "1") -> bytes:
    entries = [
        {"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for p, d in sorted(files.items())
    ]
    doc = {"format": MANIFEST_FORMAT, "name": name, "version": version, "files": entries}
    return json.dumps(doc).encode()


@dataclass
class Member:
    """One tar entry as written, whatever it claims to be."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""


def tar_bytes(members: list[Member], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type = m.type
            info.linkname = m.linkname
            info.size = len(m.data) if m.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(m.data) if info.size else None)
    return buf.getvalue()


def aegis_gzip(raw: bytes, block: int = BLOCK_SIZE) -> bytes:
    """Compress like ``aegis model build`` (gzip members with the AG length field)."""
    return b"".join(gzip_member(raw[i : i + block]) for i in range(0, len(raw), block)) or (
        gzip_member(b"")
    )


def plain_gzip(raw: bytes) -> bytes:
    """Compress like ``tar czf`` (one ordinary gzip member)."""
    return gzip.compress(raw, compresslevel=6, mtime=0)


def model_archive(
    tmp: Path,
    files: dict[str, bytes],
    *,
    extra: list[Member] | None = None,
    manifest: bytes | None = None,
    plain: bool = False,
    name: str = "model.tar.gz",
) -> Path:
    """An archive with a manifest listing ``files``, the files, then ``extra`` members."""
    members = [Member("manifest.json", manifest if manifest is not None else manifest_bytes(files))]
    members += [Member(p, d) for p, d in sorted(files.items())]
    members += extra or []
    raw = tar_bytes(members)
    path = tmp / name
    path.write_bytes(plain_gzip(raw) if plain else aegis_gzip(raw))
    return path


def sign(path: Path, key: ec.EllipticCurvePrivateKey) -> bytes:
    return sign_blob(path, key)


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}
