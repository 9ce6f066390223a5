"""The model supply chain's entry points: build, sign, verify, extract.

Other domains call these (``from aegis.registry import service as registry_service``):

* :func:`verify_archive` — signature over the archive's bytes, then the archive's content,
  in one pass; nothing is written anywhere;
* :func:`verify_and_extract` — the same, writing the members into a destination folder that
  appears only when everything held (the signature covers the very bytes extracted);
* :func:`sign_archive`, :func:`build_archive` (re-exported), :func:`load_private_key`.

Error precedence: a bad signature is reported as such even when the content is also bad, so
an unsigned malicious archive reads ``signature_invalid``; a signed one reads what is wrong.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from aegis.core.files import write_whole
from aegis.registry.archive import BuiltArchive, ModelManifest, build_archive
from aegis.registry.cosign_keys import load_private_key, load_private_key_file
from aegis.registry.errors import ArchiveCorrupt, ArchiveUnsafe, ManifestMismatch
from aegis.registry.extract import check_archive, promote, safe_extract, staging_dir
from aegis.registry.keyset import KeySet
from aegis.registry.signing import (
    decode_signature,
    sha256_file,
    sign_blob,
    verify_blob,
    verify_digest,
)
from aegis.registry.tarstream import ArchiveLimits, Progress

__all__ = [
    "ArchiveLimits",
    "BuiltArchive",
    "VerifiedArchive",
    "build_archive",
    "load_private_key",
    "load_private_key_file",
    "safe_extract",
    "sign_archive",
    "verify_and_extract",
    "verify_archive",
    "verify_blob",
]

_CONTENT_ERRORS = (ArchiveUnsafe, ArchiveCorrupt, ManifestMismatch)


@dataclass(frozen=True)
class VerifiedArchive:
    digest: str  # hex SHA-256 of the archive file, the bytes the signature covers
    key_id: str  # the trusted key that signed it
    manifest: ModelManifest
    size: int


def sign_archive(
    archive: Path, private_key: ec.EllipticCurvePrivateKey, *, out: Path | None = None
) -> Path:
    """Write ``ARCHIVE.sig`` (cosign blob format) and return its path."""
    target = out or archive.with_name(archive.name + ".sig")
    write_whole(target, sign_blob(archive, private_key))  # a full disk leaves no cut signature
    return target


def _verify(
    archive: Path,
    signature: bytes,
    keyset: KeySet,
    *,
    root: Path | None,
    limits: ArchiveLimits | None,
    signer_key: ec.EllipticCurvePublicKey | None,
    workers: int | None,
    progress: Progress | None,
) -> VerifiedArchive:
    keyset.require_nonempty()
    decode_signature(signature)
    try:
        scanned = check_archive(
            archive, limits=limits, root=root, workers=workers, progress=progress
        )
    except _CONTENT_ERRORS:
        # Say "not signed" rather than describe what an unsigned archive holds.
        verify_digest(sha256_file(archive), signature, keyset, signer_key=signer_key)
        raise
    trusted = verify_digest(scanned.scan.digest, signature, keyset, signer_key=signer_key)
    return VerifiedArchive(
        digest=scanned.scan.digest.hex(),
        key_id=trusted.key_id,
        manifest=scanned.manifest,
        size=scanned.scan.compressed_size,
    )


def verify_archive(
    archive: Path,
    signature: bytes,
    keyset: KeySet,
    *,
    limits: ArchiveLimits | None = None,
    signer_key: ec.EllipticCurvePublicKey | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> VerifiedArchive:
    """Check the signature (cosign blob, any trusted key) and every rule of the archive."""
    return _verify(
        archive,
        signature,
        keyset,
        root=None,
        limits=limits,
        signer_key=signer_key,
        workers=workers,
        progress=progress,
    )


def verify_and_extract(
    archive: Path,
    signature: bytes,
    keyset: KeySet,
    dest: Path,
    *,
    limits: ArchiveLimits | None = None,
    signer_key: ec.EllipticCurvePublicKey | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> VerifiedArchive:
    """:func:`verify_archive` and extraction in the same pass; ``dest`` appears only on success."""
    staging = staging_dir(dest)
    try:
        verified = _verify(
            archive,
            signature,
            keyset,
            root=staging,
            limits=limits,
            signer_key=signer_key,
            workers=workers,
            progress=progress,
        )
        promote(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return verified
