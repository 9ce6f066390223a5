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


class EntryHasher:
    """The hash of one entry, computed in two steps.

    Keys sort as actor, category, created_at, data, event_id, event_type, outcome, prev_hash,
    resource, seq, so everything up to ``prev_hash`` is known before the entry's place in the
    chain is: that prefix is hashed ahead (outside the append lock) and :meth:`finish` adds
    ``prev_hash`` and ``seq`` (inside it). ``data`` is the canonical JSON text as stored, placed
    in the body as it is (canonical JSON nests, so these are the bytes canonical() gives for the
    parsed object); stored text that is not canonical never hashes like the canonical text.
    """

    __slots__ = ("_prefix", "_resource")

    def __init__(
        self,
        *,
        event_id: str,
        created_at: datetime,
        category: str,
        event_type: str,
        actor: str,
        resource: str,
        outcome: str,
        data: str,
    ) -> None:
        head = canonical({"actor": actor, "category": category, "created_at": iso(created_at)})
        middle = canonical({"event_id": event_id, "event_type": event_type, "outcome": outcome})
        self._prefix = hashlib.sha256(
            head[:-1] + b',"data":' + data.encode("utf-8") + b"," + middle[1:-1] + b',"prev_hash":'
        )
        self._resource = b',"resource":' + canonical(resource) + b',"seq":'

    def finish(self, seq: int, prev_hash: str) -> str:
        h = self._prefix.copy()
        h.update(canonical(prev_hash) + self._resource + str(int(seq)).encode("ascii") + b"}")
        return h.hexdigest()


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
    """The hash of an entry (see :class:`EntryHasher`)."""
    hasher = EntryHasher(
        event_id=event_id,
        created_at=created_at,
        category=category,
        event_type=event_type,
        actor=actor,
        resource=resource,
        outcome=outcome,
        data=data,
    )
    return hasher.finish(seq, prev_hash)
