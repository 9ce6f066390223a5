"""Nothing lost when the database is unreachable (on-call runbook, "Audit backend fail").

:class:`AuditWriter` records events that are not part of a larger transaction (logins, model
loads, failures). When the database cannot be reached the event goes to a local append-only
journal (one JSON line per event, fsync'd, under an exclusive file lock shared by every process
using the data directory) and ``aegis_audit_write_errors_total{backend="database"}`` rises.

While the journal holds anything, new events are journalled too, so order is kept. ``drain()``
(called before every write and periodically) appends journalled events to the chain in order, in
batches, skipping any whose ``event_id`` already landed (or came earlier in the journal): a crash
between the database commit and the journal truncation never duplicates an event. Exactly once,
in order.

A line the chain cannot take — not an event (edited, garbage), or an event the database refuses
(a NUL character on PostgreSQL) — is moved, as it is, to ``<journal>.refused`` (0600), and an
``audit.journal_refused`` entry says how many lines and where; the events around it land. Taking
the database's refusal for the database being down kept the journal from ever draining again.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from aegis.audit import service as audit_service
from aegis.audit.schemas import AuditEventCreate, Category
from aegis.core import metrics
from aegis.core.logging import get_logger
from aegis.database.core import Database

log = get_logger(__name__)
DRAIN_BATCH = 500
REFUSED_EVENT = "audit.journal_refused"


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

    @property
    def refused_path(self) -> Path:
        return self.path.with_name(self.path.name + ".refused")

    def lines(self) -> list[bytes]:
        """The journal's whole lines, newline included (a torn last line, cut off by a crash
        mid-write, was never acknowledged: it is no line)."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        return data[: data.rfind(b"\n") + 1].splitlines(keepends=True)

    def read(self) -> list[AuditEventCreate]:
        """The events journalled, in order; a line that is not one is left out."""
        return [event for event in map(parse_line, self.lines()) if event is not None]

    def pending(self) -> int:
        return len(self.lines())

    def truncate_first(self, count: int) -> None:
        """Drop the first ``count`` lines, atomically (write the rest, fsync, rename)."""
        remaining = self.lines()[count:]
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.writelines(remaining)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path)

    def set_aside(self, lines: list[bytes]) -> None:
        """Append ``lines`` as they are to :attr:`refused_path`, durably."""
        fd = os.open(self.refused_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())


def parse_line(line: bytes) -> AuditEventCreate | None:
    """The event a journal line holds, or None when it holds none."""
    try:
        return AuditEventCreate.model_validate_json(line)
    except ValidationError:  # invalid UTF-8 and invalid JSON included
        return None


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
        lines = self.journal.lines()
        if not lines:
            return True
        try:
            for start in range(0, len(lines), DRAIN_BATCH):
                batch = lines[start : start + DRAIN_BATCH]
                self._drain_batch(batch, first=start + 1)
                self.journal.truncate_first(len(batch))
        except (OperationalError, DBAPIError) as exc:
            self._note_failure(exc)
            metrics.AUDIT_JOURNAL_PENDING.set(self.journal.pending())
            return False
        metrics.AUDIT_JOURNAL_PENDING.set(0)
        log.info("audit_journal_drained", events=len(lines))
        return True

    def _drain_batch(self, batch: list[bytes], *, first: int) -> None:
        """Append ``batch``'s events to the chain, each event_id once; set aside (and record)
        the lines the chain cannot take (``first``: the journal's line number of the first).
        Raises OperationalError/DBAPIError when the database cannot be reached."""
        refused: list[tuple[int, bytes, str]] = []
        events: list[tuple[int, bytes, AuditEventCreate]] = []
        seen: set[str] = set()
        for number, line in enumerate(batch, first):
            event = parse_line(line)
            if event is None:
                refused.append((number, line, "not an audit event"))
            elif event.event_id is None or event.event_id not in seen:
                seen.add(event.event_id or "")
                events.append((number, line, event))
        try:
            self._append_new([event for _, _, event in events])
        except (IntegrityError, DataError):  # one of them is refused: find which
            for number, line, event in events:
                try:
                    self._append_new([event])
                except (IntegrityError, DataError) as exc:
                    refused.append(
                        (number, line, f"the database refused it ({type(exc).__name__})")
                    )
        if refused:
            self._record_refused(sorted(refused))

    def _append_new(self, events: list[AuditEventCreate]) -> None:
        with self.database.unit_of_work() as session:
            landed = audit_service.existing_event_ids(
                session=session, event_ids=[e.event_id for e in events if e.event_id]
            )
            audit_service.append(
                session=session, events=[e for e in events if e.event_id not in landed]
            )

    def _record_refused(self, refused: list[tuple[int, bytes, str]]) -> None:
        """Record the refusal in the chain, then keep the lines (a crash in between refuses them
        again on the next drain: recorded twice, never lost)."""
        path = self.journal.refused_path
        reasons = [f"line {number}: {reason}" for number, _, reason in refused]
        event = AuditEventCreate(
            category="system",
            event_type=REFUSED_EVENT,
            actor="audit-journal",
            resource=str(self.journal.path)[:512],
            outcome="refused",
            data={"lines": len(refused), "kept_in": str(path), "reasons": reasons[:10]},
        )
        with self.database.unit_of_work() as session:
            audit_service.append(session=session, events=[event])
        self.journal.set_aside([line for _, line, _ in refused])
        log.error("audit_journal_refused", lines=len(refused), kept_in=str(path))

    @staticmethod
    def _note_failure(exc: Exception) -> None:
        metrics.AUDIT_WRITE_ERRORS.labels("database").inc()
        log.warning("audit_write_failed", backend="database", error=type(exc).__name__)
