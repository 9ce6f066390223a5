"""The documented canonical serialisation that audit hashes are computed over.

canonical(obj) = UTF-8 of JSON with keys sorted, no insignificant whitespace, non-ASCII kept as
is, floats as Python's repr. Timestamps are ISO 8601 UTC with microseconds
(``2026-11-23T16:29:31.123456+00:00``).

entry_hash = hex(SHA-256(canonical({"seq", "event_id", "created_at", "category", "event_type",
"actor", "resource", "outcome", "data", "prev_hash"})))

The first entry's prev_hash is 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


def canonical(obj: Any) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def iso(ts: datetime) -> str:
    if ts.tzinfo is None:  # SQLite hands back naive datetimes; Aegis stores only UTC
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    *,
    seq: int,
    event_id: str,
    created_at: datetime,
    category: str,
    event_type: str,
    actor: str,
    resource: str,
    outcome: str,
    data: str,
    prev_hash: str,
) -> str:
    body = {
        "seq": seq,
        "event_id": event_id,
        "created_at": iso(created_at),
        "category": category,
        "event_type": event_type,
        "actor": actor,
        "resource": resource,
        "outcome": outcome,
        "data": json.loads(data),
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical(body)).hexdigest()
