"""Nothing lost when the database is unreachable (on-call runbook, "Audit backend fail").

:class:`AuditWriter` records events that are not part of a larger transaction (logins, model
loads, failures). When the database cannot be reached the event goes to a local append-only
journal (one JSON line per event, fsync'd, under an exclusive file lock shared by every process
using the data directory) and ``aegis_audit_write_errors_total{backend="database"}`` rises.

While the journal holds anything, new events are journalled too, so order is kept. ``drain()``
(called before every write and periodically) appends journalled events to the chain in order, in
batches, skipping any whose ``event_id`` already landed: a crash between the database commit and
the journal truncation never duplicates an event. Exactly once, in order.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy.exc import DBAPIError, OperationalError

from aegis.audit import service as audit_service
from aegis.audit.schemas import AuditEventCreate, Category
from aegis.core import metrics
from aegis.core.logging import get_logger
from aegis.database.core import Database

log = get_logger(__name__)
DRAIN_BATCH = 500


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_suffix(path.suffix + ".lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def append(self, event: AuditEventCreate) -> None:
        """Append one event durably. Call with the lock held.

        A torn last line (a crash or a full disk mid-write) is cut off first: written after it,
        the event would be glued onto it into one line no read could parse. A write that fails
        part-way is cut off in turn, so the journal only ever holds whole lines.
        """
        line = (event.model_dump_json() + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            end = _whole_lines_end(fd)
            os.ftruncate(fd, end)
            try:
                view = memoryview(line)
                while view:  # os.write may write less than asked (a full disk)
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, end)
                raise
        finally:
            os.close(fd)

    def read(self) -> list[AuditEventCreate]:
        if not self.path.exists():
            return []
        events = []
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.endswith("\n"):  # a torn last line (crash mid-write) is not an event
                    events.append(AuditEventCreate.model_validate_json(line))
        return events

    def pending(self) -> int:
        return len(self.read())

    def truncate_first(self, count: int) -> None:
        """Drop the first ``count`` events, atomically (write the rest, fsync, rename)."""
        remaining = self.read()[count:]
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            _write_all(fh, remaining)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path)


def _whole_lines_end(fd: int) -> int:
    """The size of the file at ``fd`` up to and including its last newline."""
    end = os.fstat(fd).st_size
    if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
        return end
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _write_all(fh: IO[str], events: list[AuditEventCreate]) -> None:
    for event in events:
        fh.write(event.model_dump_json() + "\n")


class AuditWriter:
    """Record standalone audit events, falling back to the journal when the database is down."""

    def __init__(self, database: Database, journal_path: Path) -> None:
        self.database = database
        self.journal = Journal(journal_path)

    def record(
        self,
        *,
        category: Category,
        event_type: str,
        actor: str,
        resource: str = "",
        outcome: str = "ok",
        data: dict[str, Any] | None = None,
    ) -> None:
        event = AuditEventCreate(
            category=category,
            event_type=event_type,
            actor=actor,
            resource=resource,
            outcome=outcome,
            data=data or {},
            event_id=str(uuid.uuid4()),
            created_at=datetime.now(UTC),
        )
        with self.journal.locked():
            if self._drain_locked():
                try:
                    with self.database.unit_of_work() as session:
                        audit_service.append(session=session, events=[event])
                    return
                except (OperationalError, DBAPIError) as exc:
                    self._note_failure(exc)
            self.journal.append(event)
            metrics.AUDIT_JOURNAL_PENDING.set(self.journal.pending())

    def drain(self) -> bool:
        """Move journalled events into the chain. True when the journal is empty afterwards."""
        with self.journal.locked():
            return self._drain_locked()

    def _drain_locked(self) -> bool:
        events = self.journal.read()
        if not events:
            return True
        try:
            for start in range(0, len(events), DRAIN_BATCH):
                batch = events[start : start + DRAIN_BATCH]
                with self.database.unit_of_work() as session:
                    landed = audit_service.existing_event_ids(
                        session=session, event_ids=[e.event_id for e in batch if e.event_id]
                    )
                    audit_service.append(
                        session=session, events=[e for e in batch if e.event_id not in landed]
                    )
                self.journal.truncate_first(len(batch))
        except (OperationalError, DBAPIError) as exc:
            self._note_failure(exc)
            metrics.AUDIT_JOURNAL_PENDING.set(self.journal.pending())
            return False
        metrics.AUDIT_JOURNAL_PENDING.set(0)
        log.info("audit_journal_drained", events=len(events))
        return True

    @staticmethod
    def _note_failure(exc: Exception) -> None:
        metrics.AUDIT_WRITE_ERRORS.labels("database").inc()
        log.warning("audit_write_failed", backend="database", error=type(exc).__name__)
