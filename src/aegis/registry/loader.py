"""``fetch_and_prepare_model_for_load``: the only way a model reaches the inference path.

Resolve the production version in the registry, download archive and signature into the cache,
verify the signature against the trusted keys, check the archive's digest against the registry,
extract safely (every member checked: no absolute paths, ``..``, links, devices, pickles, size
bombs; manifest matches), and return the ready folder. Any failure raises a typed error, records
``model.load_refused`` in ``model_audit`` with the reason and counts
``aegis_model_signature_errors_total{reason}`` — the caller keeps serving what it had.

A cached, already-extracted model is reused only after its archive's signature verifies again
and every extracted file matches the signed manifest (size and SHA-256). A new one is extracted
and checked in a private folder, then renamed into place. Preparers of one version take turns
(an ``flock`` on ``.VERSION.lock`` beside its cache folder, engine processes sharing DATA_DIR
included); should a folder be in place all the same when the rename comes, it is used on the
same terms (every file matches the manifest), so preparing at once is not a refusal.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aegis.audit.journal import AuditWriter
from aegis.core import metrics
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.database.core import Database
from aegis.registry import catalog
from aegis.registry import service as registry_service
from aegis.registry.archive import MANIFEST_NAME, check_name_version
from aegis.registry.errors import (
    ManifestMismatch,
    ModelCacheUnwritable,
    RegistryError,
    SignatureInvalid,
)
from aegis.registry.keyset import KeySet, keyset_from_settings
from aegis.storage.errors import StorageError
from aegis.storage.service import open_store


class DigestMismatch(RegistryError):
    code = "digest_mismatch"


@dataclass(frozen=True)
class PreparedModel:
    name: str
    version: str
    digest: str
    key_id: str
    path: Path


def _split(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    folder, _, key = parts.path.rpartition("/")
    return f"{parts.scheme}://{parts.netloc}{folder}", key


def _download(uri: str, dest: Path) -> None:
    base, key = _split(uri)
    open_store(base).get_file(key, dest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_files_match(folder: Path, manifest: dict[str, object]) -> bool:
    files = manifest.get("files", [])
    assert isinstance(files, list)
    expected = {str(f["path"]): (int(f["size"]), str(f["sha256"])) for f in files}
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    present.discard(MANIFEST_NAME)  # the root one only: sub/manifest.json is a model file
    if present != set(expected):
        return False
    return all(
        (folder / path).stat().st_size == size and _sha256(folder / path) == sha
        for path, (size, sha) in expected.items()
    )


def fetch_and_prepare_model_for_load(
    model_name: str, *, settings: Settings, database: Database, actor: str = "ai-engine"
) -> PreparedModel:
    """Verify and prepare the production version of ``model_name``; fail closed."""
    writer = AuditWriter(database, settings.audit_journal_path)
    version = "?"
    try:
        with database.unit_of_work() as session:
            row = catalog.production(session=session, name=model_name)
            version, digest, manifest = row.version, row.digest, dict(row.manifest)
            archive_uri, signature_uri = row.archive_uri, row.signature_uri
        try:
            prepared = _prepare(
                settings,
                name=model_name,
                version=version,
                digest=digest,
                manifest=manifest,
                archive_uri=archive_uri,
                signature_uri=signature_uri,
            )
        except OSError as exc:
            raise ModelCacheUnwritable(
                f"the model cache cannot be written: {exc.strerror or type(exc).__name__}"
            ) from None
    except (AegisError, StorageError) as exc:
        record_refusal(writer, model_name, version, exc, actor=actor)
        raise
    writer.record(
        category="model",
        event_type="model.verified",
        actor=actor,
        resource=f"model:{model_name}/{version}",
        data={
            "model": model_name,
            "version": version,
            "digest": f"sha256:{prepared.digest}",
            "key_id": prepared.key_id,
            "verification_result": "verified",
        },
    )
    return prepared


def record_refusal(
    writer: AuditWriter,
    model_name: str,
    version: str,
    exc: AegisError,
    *,
    actor: str = "ai-engine",
) -> None:
    """Count and audit (``model.load_refused``) a model that will not be served."""
    metrics.MODEL_SIGNATURE_ERRORS.labels(exc.code).inc()
    writer.record(
        category="model",
        event_type="model.load_refused",
        actor=actor,
        resource=f"model:{model_name}/{version}",
        outcome="refused",
        data={
            "model": model_name,
            "version": version,
            "verification_result": f"refused: {exc.message}",
            "reason": exc.code,
        },
    )


def _prepare(
    settings: Settings,
    *,
    name: str,
    version: str,
    digest: str,
    manifest: dict[str, object],
    archive_uri: str,
    signature_uri: str,
) -> PreparedModel:
    check_name_version(name, version)  # they name the cache folder: never a path
    cache = settings.data_dir / "model-cache" / name / version
    cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _preparing(cache):
        cache.mkdir(exist_ok=True, mode=0o700)
        return _fill(
            settings,
            cache,
            name=name,
            version=version,
            digest=digest,
            manifest=manifest,
            archive_uri=archive_uri,
            signature_uri=signature_uri,
        )


@contextmanager
def _preparing(cache: Path) -> Iterator[None]:
    """Hold the cache folder's lock (``.VERSION.lock`` beside it; a version never starts with a
    dot) until the block ends: preparers of one version, engine processes sharing DATA_DIR
    included, take turns. Otherwise one could check or extract while another discards the
    damaged folder it is reading, and be refused. The file stays: removing it would let two
    preparers hold locks on two different files."""
    fd = os.open(cache.with_name(f".{cache.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed
        yield
    finally:
        os.close(fd)


def _fill(
    settings: Settings,
    cache: Path,
    *,
    name: str,
    version: str,
    digest: str,
    manifest: dict[str, object],
    archive_uri: str,
    signature_uri: str,
) -> PreparedModel:
    """Download, verify and extract into ``cache`` (its lock held) what is not there intact."""
    archive, signature, extracted = (
        cache / "model.tar.gz",
        cache / "model.tar.gz.sig",
        cache / "model",
    )
    if not archive.exists() or _sha256(archive) != digest:
        _download(archive_uri, archive)
    _download(signature_uri, signature)
    # MODEL_SIGNING_REQUIRED=false (explicit): still digest-checked and safely extracted.
    keyset = keyset_from_settings(settings) if settings.model_signing_required else None
    if _sha256(archive) != digest:
        raise DigestMismatch(f"archive digest differs from the registry's for {name} {version}")
    if extracted.exists():
        if keyset is not None:
            verified = registry_service.verify_archive(archive, signature.read_bytes(), keyset)
            key_id = verified.key_id
        else:
            key_id = "unverified"
        if _cached_files_match(extracted, manifest):
            return PreparedModel(name, version, digest, key_id, extracted)
        _discard(extracted)
    # Extracted and checked in a private folder, then renamed into place: the folder appears
    # whole or not at all, whatever happens to this process meanwhile.
    private = Path(tempfile.mkdtemp(prefix=f".{extracted.name}.", suffix=".partial", dir=cache))
    try:
        ready = private / extracted.name
        key_id = _extract(archive, signature, keyset, ready, row=(name, version, digest))
        if not _cached_files_match(ready, manifest):
            raise ManifestMismatch("extracted files differ from the registry's manifest")
        _place(ready, extracted, manifest)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    return PreparedModel(name, version, digest, key_id, extracted)


def _extract(
    archive: Path,
    signature: Path,
    keyset: KeySet | None,
    dest: Path,
    *,
    row: tuple[str, str, str],
) -> str:
    """Verify and extract ``archive`` into ``dest``; the signer's key id. ``row``: the
    registry's name, version and archive digest."""
    name, version, digest = row
    if keyset is None:
        registry_service.safe_extract(archive, dest)
        return "unverified"
    verified = registry_service.verify_and_extract(archive, signature.read_bytes(), keyset, dest)
    if verified.digest != digest:
        raise DigestMismatch(f"archive digest differs from the registry's for {name} {version}")
    return verified.key_id


def _place(ready: Path, extracted: Path, manifest: dict[str, object]) -> None:
    """Rename the verified folder ``ready`` to ``extracted``. When another preparer renamed its
    own there first, that folder is used if every file matches the manifest (as a cached one
    is); anything else is refused, never used."""
    try:
        ready.replace(extracted)  # one rename(2): the folder appears whole or not at all
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        if not _cached_files_match(extracted, manifest):
            raise ManifestMismatch(
                "the model cache folder filled meanwhile differs from the registry's manifest"
            ) from None


def _discard(folder: Path) -> None:
    """Remove a cached folder that failed its check: renamed aside first, so no preparer ever
    reads it half removed; gone already when another preparer discarded it first."""
    aside = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.stale")
    try:
        folder.rename(aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside)


__all__ = [
    "DigestMismatch",
    "PreparedModel",
    "SignatureInvalid",
    "fetch_and_prepare_model_for_load",
    "record_refusal",
]
