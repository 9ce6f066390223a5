"""The restore drill: prove a backup restores, and that what it restores is what was backed up.

Restores the newest (or a named) backup into a throw-away database — a new SQLite file in a
temporary folder, or a new database created on a PostgreSQL server — then checks:

* the restore itself passed (every chunk authenticated, every member's SHA-256 and row count);
* the audit chain in the restored database is intact (``aegis.audit.verify``: a changed,
  missing or reordered row breaks it), ends at the head the manifest recorded (before the
  restore's own ``backup.restored``), and its entry there has the hash the manifest recorded;
* signed audit checkpoints up to that head (when the verification key is present) match the
  restored chain, so a backup whose chain was rewritten end to end is caught too;
* every table holds the manifest's row count.

It reports how long each step took; the restore time is the RTO figure for that backup. The
drill is an audit event on the live (configured) database.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from aegis.backup import restore as restore_service
from aegis.backup import snapshot
from aegis.backup.format import Manifest
from aegis.backup.service import as_url, default_url, newest, record_event
from aegis.core.config import Settings
from aegis.core.errors import AegisError
from aegis.database.core import Database, redacted
from aegis.database.models import metadata
from aegis.storage.service import redact_url

SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


@dataclass
class TableCheck:
    name: str
    expected: int
    found: int


@dataclass
class DrillReport:
    artifact: str
    scratch: str = ""
    kept: bool = False
    manifest: Manifest | None = None
    timings: dict[str, float] = field(default_factory=dict)
    tables: list[TableCheck] = field(default_factory=list)
    chain_entries: int = 0
    checkpoints: int | None = None  # None: no verification key, not checked
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.manifest is not None

    @property
    def rto_s(self) -> float:
        """The restore's total time (see RestoreResult.rto_s); 0 when it failed."""
        return self.timings.get("total_s", 0.0)


def drill(
    *,
    settings: Settings,
    actor: str,
    artifact: str | None = None,
    location: str | None = None,
    scratch_url: str | None = None,
    keep: bool = False,
) -> DrillReport:
    if artifact is None:
        artifact = newest(location=as_url(location) if location else default_url(settings)).uri
    report = DrillReport(artifact=redact_url(artifact), kept=keep)
    with scratch_database(scratch_url, keep=keep) as url:
        report.scratch = redacted(url)
        try:
            result = restore_service.restore(
                settings=settings, artifact=artifact, actor=actor, target_url=url
            )
        except (AegisError, SQLAlchemyError) as exc:
            message = exc.message if isinstance(exc, AegisError) else str(exc).splitlines()[0]
            report.problems.append(f"restore failed: {message}")
        else:
            report.timings.update(result.timings)
            report.manifest = result.manifest
            report.chain_entries = result.chain.entries
            report.problems.extend(f"audit chain: {p}" for p in result.chain.problems)
            # The restore appended backup.restored right after what the backup held.
            restored_head = result.audit_seq - 1
            if restored_head != result.manifest.audit_head.seq:
                report.problems.append(
                    f"audit chain: the restored chain ends at entry {restored_head}, the manifest "
                    f"recorded its head at entry {result.manifest.audit_head.seq}"
                )
            _check_restored(settings, url, result.manifest, report)
    _record(settings, actor, report)
    return report


def _check_restored(settings: Settings, url: str, manifest: Manifest, report: DrillReport) -> None:
    from aegis.audit.models import AuditEntry

    audit_table = AuditEntry.__tablename__
    database = Database(url)
    try:
        with database.engine.connect() as conn:
            for entry in manifest.tables:
                # The restore appended its own event (backup.restored) to the chain.
                expected = entry.rows + (1 if entry.name == audit_table else 0)
                found = snapshot.count_rows(conn, metadata.tables[entry.name])
                report.tables.append(TableCheck(entry.name, expected, found))
                if found != expected:
                    report.problems.append(
                        f"{entry.name}: {found} rows restored, {expected} expected"
                    )
            head = manifest.audit_head
            if head.seq:
                stored = conn.execute(
                    select(AuditEntry.entry_hash).where(AuditEntry.seq == head.seq)
                ).scalar_one_or_none()
                if stored != head.hash:
                    report.problems.append(
                        f"audit entry {head.seq} differs from the head the manifest recorded"
                    )
            _check_checkpoints(settings, conn, head.seq, report)
    finally:
        database.dispose()


def _check_checkpoints(
    settings: Settings, conn: Connection, head_seq: int, report: DrillReport
) -> None:
    """Signed checkpoints at or below the backup's head must match the restored entries.

    Without a verification key they are not checked (``report.checkpoints`` None) only while
    none can be seen: a drill pod that may not read the audit store holds no key either, but a
    key missing beside checkpoints the drill can list (a mistyped path) fails it."""
    from aegis.audit.checkpoint import read_checkpoints
    from aegis.audit.models import AuditEntry
    from aegis.audit.verify import verification_key
    from aegis.storage.errors import StorageError
    from aegis.storage.service import open_store

    key_path = settings.effective_audit_verify_key_file
    try:
        store = open_store(settings.effective_audit_store_url)
        public_key = verification_key(path=key_path, store=store)
        if public_key is None:
            return
        checkpoints = read_checkpoints(store=store, public_key=public_key)
    except StorageError as exc:
        if key_path.exists():
            report.problems.append(f"audit checkpoints: {exc.message}")
        return  # no key, and no access to the audit store: nothing it could check
    except AegisError as exc:  # a key that does not load, or one missing beside checkpoints
        report.problems.append(f"audit checkpoints: {exc.message}")
        return
    checked = 0
    for cp in checkpoints:
        if not 0 < cp.seq <= head_seq:
            continue  # a checkpoint newer than the backup says nothing about it
        stored = conn.execute(
            select(AuditEntry.entry_hash).where(AuditEntry.seq == cp.seq)
        ).scalar_one_or_none()
        if stored != cp.head_hash:
            report.problems.append(
                f"audit entry {cp.seq} differs from signed checkpoint {cp.object_key} "
                "(the backup's chain was rewritten)"
            )
        checked += 1
    report.checkpoints = checked


def _record(settings: Settings, actor: str, report: DrillReport) -> None:
    data = {
        "artifact": report.artifact,
        "ok": report.ok,
        "problems": report.problems[:5],
        "restore_s": report.rto_s,
        "backup_id": report.manifest.backup_id if report.manifest else None,
        "rows": report.manifest.total_rows if report.manifest else None,
    }
    try:
        record_event(
            settings.effective_database_url,
            event_type="backup.drill",
            actor=actor,
            resource=report.artifact,
            outcome="ok" if report.ok else "failed",
            data=data,
        )
    except (AegisError, SQLAlchemyError) as exc:
        reason = exc.message if isinstance(exc, AegisError) else type(exc).__name__
        report.problems.append(f"could not record the drill in the audit log: {reason}")


# --- the throw-away database -------------------------------------------------------------------
@contextmanager
def scratch_database(scratch_url: str | None, *, keep: bool) -> Iterator[str]:
    """A new, empty database: SQLite in a temp folder by default, the new SQLite file
    ``scratch_url`` names, or one created on the PostgreSQL server it points at; removed
    afterwards unless ``keep``."""
    if scratch_url is None:
        folder = tempfile.mkdtemp(prefix="aegis-drill-")
        try:
            yield f"sqlite+pysqlite:///{folder}/drill.db"
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        parsed = make_url(scratch_url)
    except ArgumentError:
        raise AegisError(
            "--scratch-url is not a database URL (e.g. postgresql+psycopg://user@host:5432/postgres)"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        yield from _sqlite_scratch(scratch_url, Path(parsed.database), keep=keep)
        return
    if parsed.get_backend_name() != "postgresql":
        yield scratch_url
        return
    name = f"aegis_drill_{datetime.now(UTC):%Y%m%d%H%M%S}_{secrets.token_hex(3)}"
    server = create_engine(scratch_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    quoted = server.dialect.identifier_preparer.quote(name)
    try:
        with server.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
        try:
            yield parsed.set(database=name).render_as_string(hide_password=False)
        finally:
            if not keep:
                with server.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        server.dispose()


def _sqlite_scratch(scratch_url: str, path: Path, *, keep: bool) -> Iterator[str]:
    """A SQLite file the drill creates, and (unless ``keep``) deletes with its journal files.

    An existing file is refused: deleting it afterwards could destroy someone's database, and
    leaving it would leave a full copy of the backup (users, audit log) where "removed" was
    reported."""
    if path.exists():
        raise AegisError(
            f"--scratch-url names an existing file, {path}: the drill restores into a new "
            "database and deletes it afterwards; name a file that does not exist yet"
        )
    try:
        yield scratch_url
    finally:
        if not keep:
            for leftover in (path, *(Path(f"{path}{end}") for end in SQLITE_SIDE_FILES)):
                leftover.unlink(missing_ok=True)
