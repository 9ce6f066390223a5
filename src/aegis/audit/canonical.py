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


# One encoder for every call: json.dumps with non-default options builds a new one each time.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical(obj: Any) -> bytes:
    return _ENCODER.encode(obj).encode("utf-8")


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
    """The hash of an entry. ``data`` is the canonical JSON text as stored: it is placed in the
    body as it is (the bytes canonical() would give for the parsed object, since canonical JSON
    nests), so stored text that is not canonical never hashes like the canonical text."""
    head = canonical(
        {
            "actor": actor,
            "category": category,
            "created_at": iso(created_at),
        }
    )
    tail = canonical(
        {
            "event_id": event_id,
            "event_type": event_type,
            "outcome": outcome,
            "prev_hash": prev_hash,
            "resource": resource,
            "seq": seq,
        }
    )
    # {"actor":..,"category":..,"created_at":..,"data":<data>,"event_id":..,...,"seq":..}
    body = head[:-1] + b',"data":' + data.encode("utf-8") + b"," + tail[1:]
    return hashlib.sha256(body).hexdigest()
