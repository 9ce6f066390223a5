"""Appending to and reading the audit chain.

``record_audit_event`` is the one entry point. It appends inside the caller's transaction, so
an action's state change and its audit record land together or not at all. Appends are
serialised: on PostgreSQL by a transaction-scoped advisory lock (held to commit, so concurrent
API processes still build one chain), on SQLite by the ``BEGIN IMMEDIATE`` write lock every Aegis
transaction takes. Under that lock the head is read and the new entry gets ``seq = head + 1`` —
gapless, because a rolled-back append frees its number for the next writer.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, select, text
from sqlalchemy.orm import Session

from aegis.audit import canonical
from aegis.audit.errors import UnknownAuditType
from aegis.audit.models import AuditEntry
from aegis.audit.schemas import (
    CATEGORIES,
    EVENT_TYPES,
    AuditEntryRead,
    AuditEventCreate,
    AuditPage,
    Category,
)
from aegis.database.bulk import insert_rows
from aegis.database.core import is_postgres

# pg_advisory_xact_lock key: the bytes "AEGISAUD" as a signed 64-bit integer.
APPEND_LOCK_KEY = int.from_bytes(b"AEGISAUD", "big", signed=True)
AUDIT_LOG = cast(Table, AuditEntry.__table__)


def _lock_chain(session: Session) -> None:
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK_KEY})
    # SQLite: the connection already holds the database write lock (BEGIN IMMEDIATE).


def head(*, session: Session) -> tuple[int, str]:
    """(seq, entry_hash) of the newest entry, or (0, genesis) for an empty chain."""
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return (int(row[0]), str(row[1])) if row else (0, canonical.GENESIS_HASH)


def _prepare(event: AuditEventCreate) -> tuple[dict[str, Any], canonical.EntryHasher]:
    """Everything about an entry but its place in the chain (done before taking the lock)."""
    fields: dict[str, Any] = {
        "event_id": event.event_id or str(uuid.uuid4()),
        "created_at": (event.created_at or datetime.now(UTC)).astimezone(UTC),
        "category": event.category,
        "event_type": event.event_type,
        "actor": event.actor,
        "resource": event.resource,
        "outcome": event.outcome,
        "data": canonical.canonical(event.data).decode("utf-8"),
    }
    return fields, canonical.EntryHasher(**fields)


def append(*, session: Session, events: Sequence[AuditEventCreate]) -> list[dict[str, Any]]:
    """Append ``events`` in order to the chain within the caller's transaction.

    Each entry is serialised and most of its hash computed before the lock is taken; under the
    lock only the head is read, the links finished, and one INSERT statement sent (a duplicate
    ``event_id`` — a journal replay — fails here, inside the lock). Returns the rows as written
    (column -> value).
    """
    if not events:
        return []
    prepared = [_prepare(event) for event in events]
    _lock_chain(session)
    seq, prev = head(session=session)
    rows = []
    for fields, hasher in prepared:
        seq += 1
        fields["seq"], fields["prev_hash"] = seq, prev
        prev = fields["entry_hash"] = hasher.finish(seq, prev)
        rows.append(fields)
    insert_rows(session, AUDIT_LOG, rows)  # one statement for the lot
    return rows


def record_audit_event(
    *,
    session: Session,
    category: Category,
    event_type: str,
    actor: str,
    resource: str = "",
    outcome: str = "ok",
    data: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> AuditEntry:
    """Record one audit event in the caller's transaction. The one entry point."""
    event = AuditEventCreate(
        category=category,
        event_type=event_type,
        actor=actor,
        resource=resource,
        outcome=outcome,
        data=data or {},
        event_id=event_id,
    )
    return AuditEntry(**append(session=session, events=[event])[0])


def existing_event_ids(*, session: Session, event_ids: Sequence[str]) -> set[str]:
    if not event_ids:
        return set()
    rows = session.execute(select(AuditEntry.event_id).where(AuditEntry.event_id.in_(event_ids)))
    return {str(row[0]) for row in rows}


def to_read(entry: AuditEntry) -> AuditEntryRead:
    """The entry as the API and the export show it. Data that is not a JSON object (every writer
    stores one, so the row was forged) is shown as it is, in ``data_not_object``, never hidden
    and never an error that would hide the entries around it."""
    import json

    try:
        data = json.loads(entry.data)
    except ValueError:
        data = None
    forged = not isinstance(data, dict)
    return AuditEntryRead(
        seq=entry.seq,
        event_id=entry.event_id,
        created_at=entry.created_at.replace(tzinfo=entry.created_at.tzinfo or UTC),
        category=entry.category,
        event_type=entry.event_type,
        actor=entry.actor,
        resource=entry.resource,
        outcome=entry.outcome,
        data={} if forged else data,
        data_not_object=entry.data if forged else None,
        prev_hash=entry.prev_hash,
        entry_hash=entry.entry_hash,
    )


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC, to compare with ``created_at`` (a time without an offset is UTC, as
    every Aegis time is). SQLite keeps a time's digits and drops its offset, and PostgreSQL reads
    a time without one in the session's time zone, so a bound is converted before it is sent.
    An offset taking it past year 1 or 9999 in UTC is clamped: it is before or after every
    entry all the same."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if moment.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)


def _type_filter(session: Session, value: str | None) -> tuple[str | None, str | None]:
    """(category, event type) that ``value`` names: a category, an event type Aegis records
    (:data:`EVENT_TYPES`) or one the log holds (an older version's). Anything else would be an
    empty page that looks like "nothing happened": it is refused, naming the valid ones."""
    if not value:
        return None, None
    if value in CATEGORIES:
        return value, None
    if (
        value in EVENT_TYPES
        or session.scalar(select(AuditEntry.seq).where(AuditEntry.event_type == value).limit(1))
        is not None
    ):
        return None, value
    raise UnknownAuditType(
        f"type {value!r} is not a category ({', '.join(CATEGORIES)}) or an event type"
        f" ({', '.join(sorted(EVENT_TYPES))}, or another in the log)"
    )


def query(
    *,
    session: Session,
    type_filter: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    after_seq: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """Entries oldest first, filtered, one page; ``next_cursor`` continues after the last.
    ``type_filter``: a category or an exact event type (:func:`_type_filter`)."""
    category, event_type = _type_filter(session, type_filter)
    stmt = select(AuditEntry).order_by(AuditEntry.seq).limit(limit + 1)
    if category:
        stmt = stmt.where(AuditEntry.category == category)
    if event_type:
        stmt = stmt.where(AuditEntry.event_type == event_type)
    if actor:
        stmt = stmt.where(AuditEntry.actor == actor)
    if since:
        stmt = stmt.where(AuditEntry.created_at >= as_utc(since))
    if after_seq:
        stmt = stmt.where(AuditEntry.seq > after_seq)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        items=[to_read(row) for row in rows],
        next_cursor=rows[-1].seq if more and rows else None,
    )
