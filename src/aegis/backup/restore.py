"""Restore a backup into an empty database.

1. Fetch the artifact and read it once end to end: decrypt (each chunk authenticated), check
   every member's SHA-256, size and row count against the manifest. Nothing is written before
   the whole artifact has passed.
2. Check the target holds no Aegis rows (``force_clean`` empties it first by migrating down to
   base), then run the Alembic migrations up to the backup's revision(s).
3. In one transaction: insert every table in FK order in batches, reset PostgreSQL sequences of
   integer keys to ``max(id) + 1``, compare each table's row count with the manifest.
4. Migrate to this version's heads, record ``backup.restored`` on the target's audit chain (an
   ordinary append, so the chain stays valid) and verify the whole chain.

Values are decoded per column kind (codec.py), so a SQLite backup restores into PostgreSQL and
back.
"""

from __future__ import annotations

import binascii
import contextlib
import hashlib
import hmac
import json
import tempfile
import time
from dataclasses import dataclass
from decimal import InvalidOperation
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    Connection,
    bindparam,
    false,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import DataError, IntegrityError

from aegis.audit.verify import VerifyReport
from aegis.backup import codec, snapshot
from aegis.backup.errors import (
    BackupCorrupt,
    BackupError,
    BackupIncompatible,
    BackupNotFound,
    RestoreTargetNotEmpty,
)
from aegis.backup.format import (
    MANIFEST,
    MEMBER_RE,
    Manifest,
    TableEntry,
    format_errors,
    iter_lines,
    iter_members,
    read_manifest_member,
    verify_artifact,
)
from aegis.backup.service import (
    ProgressFn,
    artifact_uri,
    encryption_secret,
    record_event,
    split_artifact_uri,
)
from aegis.core.config import Settings, validate_database_url
from aegis.database import migrate
from aegis.database.core import Database, wait_for_database
from aegis.database.models import metadata
from aegis.storage.errors import ObjectNotFound
from aegis.storage.service import open_store

BATCH = 1000


@dataclass
class RestoreResult:
    artifact: str
    target: str
    manifest: Manifest
    audit_seq: int
    chain: VerifyReport
    timings: dict[str, float]

    @property
    def rto_s(self) -> float:
        """Seconds from starting to fetch the artifact to a restored, migrated database whose
        audit chain has been verified: the recovery time this backup gives."""
        return self.timings["total_s"]


def restore(
    *,
    settings: Settings,
    artifact: str,
    actor: str,
    target_url: str | None = None,
    force_clean: bool = False,
    allow_unencrypted: bool = False,
    progress: ProgressFn | None = None,
) -> RestoreResult:
    """Restore ``artifact`` into ``target_url`` (default ``DATABASE_URL``)."""
    target_url = target_url or settings.effective_database_url
    validate_database_url(target_url)
    store_url, key = split_artifact_uri(artifact)
    uri = artifact_uri(store_url, key)
    secret = encryption_secret(settings)
    timings: dict[str, float] = {}
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aegis-restore-") as tmp:
        local = Path(tmp) / "artifact"
        started = time.monotonic()
        try:
            open_store(store_url).get_file(key, local)
        except ObjectNotFound:
            raise BackupNotFound(f"no backup at {uri}") from None
        timings["download_s"] = _lap(started)
        started = time.monotonic()
        manifest = verify_artifact(local, secret=secret, allow_unencrypted=allow_unencrypted)
        check_compatible(manifest)
        timings["verify_s"] = _lap(started)
        database = Database(target_url)
        try:
            wait_for_database(database.engine, timeout_s=settings.database_connect_timeout_s)
            started = time.monotonic()
            prepare_target(database, manifest, force_clean=force_clean)
            timings["migrate_s"] = _lap(started)
            started = time.monotonic()
            _insert_all(
                database,
                local,
                manifest,
                secret=secret,
                allow_unencrypted=allow_unencrypted,
                progress=progress,
            )
            timings["insert_s"] = _lap(started)
        finally:
            database.dispose()
    database = Database(target_url)
    try:
        migrate.upgrade(database.engine)  # the backup's revision → this version's heads
        seq = record_event(
            target_url,
            event_type="backup.restored",
            actor=actor,
            resource=uri,
            data={
                "artifact": uri,
                "backup_id": manifest.backup_id,
                "backup_created_at": manifest.created_at.isoformat(),
                "source_dialect": manifest.source_dialect,
                "alembic_revisions": manifest.alembic_revisions,
                "rows": manifest.total_rows,
            },
        )
        started = time.monotonic()
        chain = verify_chain(database)
        timings["audit_verify_s"] = _lap(started)
    finally:
        database.dispose()
    timings["total_s"] = _lap(begun)
    return RestoreResult(uri, database.redacted_url, manifest, seq, chain, timings)


def _lap(started: float) -> float:
    return round(time.monotonic() - started, 4)


def verify_chain(database: Database) -> VerifyReport:
    from aegis.audit import verify as audit_verify

    with database.unit_of_work() as session:
        return audit_verify.verify(session=session, store=None, public_key=None)


# --- checks before writing ---------------------------------------------------------------------
def check_compatible(manifest: Manifest) -> None:
    """The backup's schema must be one this Aegis can migrate to, and match its models."""
    script = snapshot.script_directory()
    for revision in manifest.alembic_revisions:
        try:
            known = script.get_revision(revision) is not None
        except Exception:  # alembic raises several kinds for an unknown id
            known = False
        if not known:
            raise BackupIncompatible(
                f"the backup was taken at schema revision {revision}, which this Aegis does not "
                f"know: restore it with Aegis {manifest.aegis_version} or newer"
            )
    if not manifest.alembic_revisions:
        raise BackupIncompatible("the backup records no schema revision")
    at_heads = set(manifest.alembic_revisions) == snapshot.known_heads()
    names = [t.name for t in manifest.tables]
    if at_heads and set(names) != set(metadata.tables):
        missing = sorted(set(metadata.tables) - set(names))
        raise BackupCorrupt(f"the backup leaves out table(s) {', '.join(missing)} of its schema")
    order = {name: i for i, name in enumerate(names)}
    for entry in manifest.tables:
        _check_table(entry, order, at_heads=at_heads)


def _check_table(entry: TableEntry, order: dict[str, int], *, at_heads: bool) -> None:
    table = metadata.tables.get(entry.name)
    if table is None:
        raise BackupIncompatible(f"the backup has table {entry.name}, unknown to this Aegis")
    if len(entry.columns) != len(entry.kinds) or len(set(entry.columns)) != len(entry.columns):
        raise BackupCorrupt(f"the manifest's columns for {entry.name} are malformed")
    for column, kind in zip(entry.columns, entry.kinds, strict=True):
        if column not in table.c or codec.column_kind(table.c[column]) != kind:
            raise BackupIncompatible(
                f"{entry.name}.{column} ({kind}) in the backup does not match this Aegis's schema"
            )
    if at_heads and set(entry.columns) != set(table.c.keys()):
        raise BackupCorrupt(f"the backup leaves out columns of {entry.name}")
    for fk in table.foreign_keys:
        parent = fk.column.table.name
        if parent in order and order[parent] > order[entry.name]:
            raise BackupIncompatible(f"the backup stores {entry.name} before {parent}")


# --- the target --------------------------------------------------------------------------------
def _target_state(database: Database) -> tuple[set[str], dict[str, int], list[str]]:
    """(table names, row counts of non-empty Aegis tables, Alembic revisions)."""
    with database.engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        counts = {}
        for name in sorted(names & set(metadata.tables)):
            rows = snapshot.count_rows(conn, metadata.tables[name])
            if rows:
                counts[name] = rows
        revisions: list[str] = []
        if snapshot.VERSION_TABLE in names:
            rows_ = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            revisions = sorted(str(r) for r in rows_)
    return names, counts, revisions


def prepare_target(database: Database, manifest: Manifest, *, force_clean: bool) -> None:
    """Refuse a target with Aegis rows (unless ``force_clean``); migrate it to the backup's
    revision(s), from scratch when it is at another one."""
    names, counts, revisions = _target_state(database)
    where = database.redacted_url
    if counts and not force_clean:
        listing = ", ".join(f"{name}: {rows}" for name, rows in counts.items())
        raise RestoreTargetNotEmpty(
            f"target database {where} already holds Aegis rows ({listing}); restore only into "
            "an empty database, or pass --force-clean to delete them first"
        )
    wanted = sorted(manifest.alembic_revisions)
    aegis_tables = names & set(metadata.tables)
    if counts or (revisions and revisions != wanted) or (aegis_tables and not revisions):
        if not revisions:
            raise BackupError(
                f"target database {where} has Aegis tables but no alembic_version: "
                "restore into an empty database"
            )
        migrate.downgrade(database.engine, "base")  # drops every Aegis table and view
        left = set(inspect(database.engine).get_table_names()) & set(metadata.tables)
        if left:
            raise BackupError(f"could not empty {where}: {', '.join(sorted(left))} remain")
    for revision in wanted:
        migrate.upgrade(database.engine, revision)
    if _target_state(database)[2] != wanted:
        raise BackupError(f"could not migrate {where} to revision {', '.join(wanted)}")


# --- rows --------------------------------------------------------------------------------------
def _insert_all(
    database: Database,
    path: Path,
    manifest: Manifest,
    *,
    secret: str | None,
    allow_unencrypted: bool,
    progress: ProgressFn | None,
) -> None:
    total = manifest.total_rows
    if progress:
        progress(0, total)
    members = iter_members(path, secret=secret, allow_unencrypted=allow_unencrypted)
    with (
        contextlib.closing(members),
        database.engine.begin() as conn,
        format_errors(),
    ):
        for name, handle in members:
            if name == MANIFEST:
                if read_manifest_member(handle) != manifest:
                    raise BackupCorrupt("the artifact changed while it was being restored")
                continue
            match = MEMBER_RE.fullmatch(name)
            entry = manifest.table(match["table"] if match else name)
            _insert_table(
                conn, entry=entry, handle=handle, member=name, total=total, progress=progress
            )
        if conn.dialect.name == "postgresql":
            _reset_sequences(conn, manifest)
        for entry in manifest.tables:
            found = snapshot.count_rows(conn, metadata.tables[entry.name])
            if found != entry.rows:
                raise BackupCorrupt(
                    f"{entry.name}: {found} rows in the target after restore, "
                    f"{entry.rows} in the backup"
                )


def _insert_table(
    conn: Connection,
    *,
    entry: TableEntry,
    handle: IO[bytes],
    member: str,
    total: int,
    progress: ProgressFn | None,
) -> None:
    table = metadata.tables[entry.name]
    columns = [table.c[name] for name in entry.columns]
    stmt = insert(table).values(
        {col.name: bindparam(f"p{i}", type_=codec.bind_type(col)) for i, col in enumerate(columns)}
    )
    sha = hashlib.sha256()
    batch: list[dict[str, Any]] = []
    rows = 0
    decode_row = _RowDecoder(entry)
    for line in iter_lines(handle, member):
        sha.update(line)
        sha.update(b"\n")
        rows += 1
        batch.append(decode_row(line, member, rows))
        if len(batch) >= BATCH:
            _execute(conn, stmt, batch, member)
            if progress:
                progress(len(batch), total)
            batch = []
    if batch:
        _execute(conn, stmt, batch, member)
        if progress:
            progress(len(batch), total)
    if rows != entry.rows or not hmac.compare_digest(sha.hexdigest(), entry.sha256):
        raise BackupCorrupt(f"{member}: does not match the manifest (changed during restore)")


def _execute(conn: Connection, stmt: Any, batch: list[dict[str, Any]], member: str) -> None:
    try:
        conn.execute(stmt, batch)
    except (IntegrityError, DataError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise BackupCorrupt(f"{member}: the database rejected rows: {reason}") from None


class _RowDecoder:
    """Turns one JSON line of a table member into insert parameters ``p0..pN``."""

    def __init__(self, entry: TableEntry) -> None:
        self._entry = entry
        self._columns = set(entry.columns)
        self._plan = [
            (f"p{i}", name, codec.decoder(kind))
            for i, (name, kind) in enumerate(zip(entry.columns, entry.kinds, strict=True))
        ]

    def __call__(self, line: bytes, member: str, index: int) -> dict[str, Any]:
        try:
            row = json.loads(line)
        except ValueError:
            raise BackupCorrupt(f"{member} row {index}: not a JSON object") from None
        if not isinstance(row, dict) or row.keys() != self._columns:
            raise BackupCorrupt(f"{member} row {index}: its columns do not match the manifest")
        try:
            return {
                param: None if row[name] is None else decode(row[name])
                for param, name, decode in self._plan
            }
        except (ValueError, InvalidOperation, binascii.Error):
            for name, kind in zip(self._entry.columns, self._entry.kinds, strict=True):
                # Slow path, only for a bad row: find and name the culprit.
                codec.decode(kind, row[name], f"{member} row {index} column {name}")
            raise  # pragma: no cover - the loop above raises


def _reset_sequences(conn: Connection, manifest: Manifest) -> None:
    """After explicit ids were inserted, the next generated id must be max(id) + 1."""
    for entry in manifest.tables:
        table = metadata.tables[entry.name]
        column = table.autoincrement_column
        if column is None or column.name not in entry.columns:
            continue
        sequence = func.pg_get_serial_sequence(table.name, column.name)
        next_id = func.coalesce(select(func.max(column)).scalar_subquery(), 0) + 1
        conn.execute(select(func.setval(sequence, next_id, false())))
