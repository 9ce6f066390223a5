"""Tampering with the audit chain as an attacker holding the database would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from aegis.audit import canonical
from aegis.audit import service as audit_service
from aegis.audit.models import AuditEntry
from aegis.database.core import Database


def forge_tail(database: Database, *, category: str, event_type: str, data: str) -> int:
    """Append a row with ``data`` stored as given, its hash recomputed and linked (only a later
    checkpoint can tell). Returns its seq."""
    with database.unit_of_work() as session:
        seq, prev = audit_service.head(session=session)
        fields = {
            "seq": seq + 1,
            "event_id": str(uuid.uuid4()),
            "created_at": datetime.now(UTC),
            "category": category,
            "event_type": event_type,
            "actor": "mallory",
            "resource": "",
            "outcome": "ok",
            "data": data,
            "prev_hash": prev,
        }
        session.add(AuditEntry(**fields, entry_hash=canonical.entry_hash(**fields)))  # type: ignore[arg-type]
    return seq + 1
