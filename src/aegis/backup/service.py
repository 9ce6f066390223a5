"""Backups of the Aegis database: create, list, prune (restore and drill: restore.py, drill.py).

A backup is a *logical* copy that reads like any client (no ``pg_dump``: one format for SQLite
and PostgreSQL, no client binary whose version must match the server). Every table declared in
``aegis.database.models.metadata`` is read inside one snapshot transaction (snapshot.py) and
streamed as JSON Lines into a tar with a manifest (format.py), gzipped, encrypted with AES-256-GCM
when ``BACKUP_ENCRYPTION_KEY`` is set (crypto.py), and written to an object store with
``aegis.storage.service.open_store`` (``BACKUP_DIR`` as a ``file://`` URL unless told
otherwise). Each backup and each pruning is an audit event on the source database.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aegis
from aegis.backup import snapshot
from aegis.backup.crypto import check_secret
from aegis.backup.errors import BackupError, BackupNotFound
from aegis.backup.format import (
    MANIFEST,
    ArchiveWriter,
    AuditHead,
    Manifest,
    TableEntry,
    TableSpool,
    artifact_name,
    member_name,
    parse_name,
)
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.database.core import Database
from aegis.database.models import metadata
from aegis.storage.service import ObjectStore, as_store_url, open_store, redact_url

log = logging.getLogger(__name__)

# (rows just done, total rows) — drives a progress bar.
ProgressFn = Callable[[int, int], None]


# --- locations ---------------------------------------------------------------------------------
def as_url(location: str) -> str:
    """An object-store URL: a URL as given, a local path as ``file://``."""
    return as_store_url(location)


def default_url(settings: Settings) -> str:
    """``BACKUP_DIR`` (default ``<data dir>/backups``) as a ``file://`` URL."""
    return settings.effective_backup_dir.expanduser().resolve().as_uri()


def split_artifact_uri(uri: str) -> tuple[str, str]:
    """(store URL, object key) of an artifact URI such as ``s3://bucket/db/aegis-….tar.gz``."""
    parts = urlsplit(as_url(uri))
    folder, _, key = parts.path.rpartition("/")
    if not key:
        raise BackupNotFound(f"{redact_url(uri)} names a folder, not a backup artifact")
    if parts.scheme == "file" and not folder:
        folder = "/"
    return urlunsplit((parts.scheme, parts.netloc, folder, parts.query, "")), key


def artifact_uri(store_url: str, key: str) -> str:
    return f"{redact_url(store_url).rstrip('/')}/{key}"


def encryption_secret(settings: Settings) -> str | None:
    if settings.backup_encryption_key is None:
        return None
    secret = settings.backup_encryption_key.get_secret_value()
    check_secret(secret)
    return secret


# --- audit -------------------------------------------------------------------------------------
def record_event(
    database_url: str,
    *,
    event_type: str,
    actor: str,
    resource: str,
    data: dict[str, Any],
    outcome: str = "ok",
) -> int:
    """One ``system`` audit event in its own unit of work on ``database_url``; its seq."""
    from aegis.audit import service as audit_service

    database = Database(database_url)
    try:
        with database.unit_of_work() as session:
            entry = audit_service.record_audit_event(
                session=session,
                category="system",
                event_type=event_type,
                actor=actor,
                resource=resource[:512],
                outcome=outcome,
                data=data,
            )
            return entry.seq
    finally:
        database.dispose()


def record_failure(
    settings: Settings, *, event_type: str, actor: str, resource: str, exc: Exception
) -> None:
    """Best effort: audit a failed operation on the configured database."""
    message = exc.message if isinstance(exc, AegisError) else f"{type(exc).__name__}: {exc}"
    try:
        record_event(
            settings.effective_database_url,
            event_type=event_type,
            actor=actor,
            resource=resource,
            outcome="failed",
            data={"error": message[:1000]},
        )
    except Exception:  # the database may be what failed; the original error is what matters
        log.warning("backup_failure_not_audited", exc_info=True)


# --- create ------------------------------------------------------------------------------------
@dataclass
class BackupResult:
    uri: str
    key: str
    manifest: Manifest
    sha256: str
    size: int
    encrypted: bool
    elapsed_s: float
    pruned: list[str] = field(default_factory=list)


def create(
    *,
    settings: Settings,
    actor: str,
    to: str | None = None,
    prune: bool = True,
    now: datetime | None = None,
    progress: ProgressFn | None = None,
) -> BackupResult:
    """Back up ``DATABASE_URL`` to ``to`` (default ``BACKUP_DIR``); then prune old backups."""
    store_url = as_url(to) if to else default_url(settings)
    created_at = (now or datetime.now(UTC)).astimezone(UTC)
    backup_id = secrets.token_hex(4)
    secret = encryption_secret(settings)
    key = artifact_name(created_at, backup_id, encrypted=secret is not None)
    uri = artifact_uri(store_url, key)
    started = time.monotonic()
    try:
        store = open_store(store_url)
        with tempfile.TemporaryDirectory(prefix="aegis-backup-") as tmp:
            local = Path(tmp) / key
            manifest, sha256, size = _write(
                settings.effective_database_url,
                local,
                secret=secret,
                created_at=created_at,
                backup_id=backup_id,
                progress=progress,
            )
            store.put_file(key, local)
    except Exception as exc:
        record_failure(settings, event_type="backup.created", actor=actor, resource=uri, exc=exc)
        raise
    result = BackupResult(
        uri=uri,
        key=key,
        manifest=manifest,
        sha256=sha256,
        size=size,
        encrypted=secret is not None,
        elapsed_s=time.monotonic() - started,
    )
    record_event(
        settings.effective_database_url,
        event_type="backup.created",
        actor=actor,
        resource=uri,
        data={
            "artifact": uri,
            "backup_id": backup_id,
            "sha256": sha256,
            "bytes": size,
            "encrypted": result.encrypted,
            "rows": manifest.total_rows,
            "tables": len(manifest.tables),
            "alembic_revisions": manifest.alembic_revisions,
            "audit_head_seq": manifest.audit_head.seq,
        },
    )
    if prune:
        result.pruned = prune_backups(settings=settings, actor=actor, location=store_url, now=now)
    return result


def _write(
    database_url: str,
    path: Path,
    *,
    secret: str | None,
    created_at: datetime,
    backup_id: str,
    progress: ProgressFn | None,
) -> tuple[Manifest, str, int]:
    writer = ArchiveWriter(path, secret=secret, created_at=created_at)
    spool: TableSpool | None = None
    try:
        with snapshot.snapshot(database_url) as conn:
            revisions = snapshot.check_source(conn)
            totals = {t.name: snapshot.count_rows(conn, t) for t in metadata.sorted_tables}
            head_seq, head_hash = snapshot.audit_head(conn)
            total = sum(totals.values())
            if progress:
                progress(0, total)
            entries = []
            for table in metadata.sorted_tables:
                spool = TableSpool(path.with_name(f"{table.name}.jsonl"))
                for row in snapshot.read_table(conn, table):
                    spool.write_row(row)
                    if progress and spool.rows % snapshot.YIELD_PER == 0:
                        progress(snapshot.YIELD_PER, total)
                sha256 = spool.close()
                if progress:
                    progress(spool.rows % snapshot.YIELD_PER, total)
                if spool.rows != totals[table.name]:  # impossible inside one snapshot
                    raise BackupError(f"{table.name} changed while it was read: not a snapshot")
                writer.add_file(member_name(table.name), spool.path)
                spool.path.unlink()
                entries.append(_entry(table.name, spool, sha256))
                spool = None
            dialect = conn.dialect.name
        manifest = Manifest(
            backup_id=backup_id,
            created_at=created_at,
            source_dialect=dialect,
            aegis_version=aegis.__version__,
            alembic_revisions=revisions,
            audit_head=AuditHead(seq=head_seq, hash=head_hash),
            tables=entries,
        )
        writer.add_bytes(MANIFEST, manifest.model_dump_json(indent=1).encode("utf-8"))
        sha256, size = writer.close()
    except BaseException:  # an error, Ctrl-C or (through the CLI) SIGTERM
        if spool is not None:
            spool.abort()
        writer.abort()
        raise
    return manifest, sha256, size


def _entry(name: str, spool: TableSpool, sha256: str) -> TableEntry:
    from aegis.backup.codec import column_kind

    table = metadata.tables[name]
    return TableEntry(
        name=name,
        columns=[c.name for c in table.columns],
        kinds=[column_kind(c) for c in table.columns],
        rows=spool.rows,
        bytes=spool.size,
        sha256=sha256,
    )


# --- list and prune ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BackupInfo:
    key: str
    uri: str
    created_at: datetime
    encrypted: bool


def list_backups(*, store: ObjectStore) -> list[BackupInfo]:
    """Backup artifacts at the store's root, oldest first (other objects are ignored)."""
    found = []
    for key in store.list("aegis-"):
        created_at = parse_name(key)
        if created_at is not None:
            found.append(
                BackupInfo(key, artifact_uri(store.url, key), created_at, key.endswith(".enc"))
            )
    return sorted(found, key=lambda b: (b.created_at, b.key))


def newest(*, location: str) -> BackupInfo:
    backups = list_backups(store=open_store(location, create=False))
    if not backups:
        raise BackupNotFound(f"no backups in {redact_url(location)}")
    return backups[-1]


def prune_backups(
    *, settings: Settings, actor: str, location: str | None = None, now: datetime | None = None
) -> list[str]:
    """Delete backups older than ``RETENTION_DAYS``, never the newest one; their URIs."""
    store_url = as_url(location) if location else default_url(settings)
    store = open_store(store_url, create=location is None)
    backups = list_backups(store=store)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=settings.retention_days)
    doomed = [b for b in backups[:-1] if b.created_at < cutoff]
    for backup in doomed:
        store.delete(backup.key)
    if doomed:
        record_event(
            settings.effective_database_url,
            event_type="backup.pruned",
            actor=actor,
            resource=redact_url(store_url),
            data={
                "deleted": [b.key for b in doomed],
                "kept": len(backups) - len(doomed),
                "retention_days": settings.retention_days,
            },
        )
    return [b.uri for b in doomed]
