"""Signed checkpoints: the chain's size and head hash, signed with the audit key, written to the
object store. They make truncation, a database rolled back to an older point, and a rewritten
chain detectable, since an attacker with the database alone cannot forge them.

Object key: ``checkpoints/<seq, 20 digits>-<unix ms>.json``; body::

    {"payload": {"seq": N, "head_hash": "...", "created_at": "...", "key_id": "..."},
     "signature": "<base64 Ed25519 over canonical(payload)>"}
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from aegis.audit import canonical, keys
from aegis.audit import service as audit_service
from aegis.audit.errors import CheckpointInvalid
from aegis.storage.service import ObjectStore

PREFIX = "checkpoints/"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: str
    created_at: str
    key_id: str
    object_key: str


def write_checkpoint(
    *,
    session: Session,
    store: ObjectStore,
    private_key: Ed25519PrivateKey,
    now: datetime | None = None,
) -> Checkpoint:
    """Sign the chain's head now (``now``: this host's clock unless given)."""
    seq, head_hash = audit_service.head(session=session)
    now = now or datetime.now(UTC)
    created_at, key_id = canonical.iso(now), keys.key_id(private_key.public_key())
    payload = {"seq": seq, "head_hash": head_hash, "created_at": created_at, "key_id": key_id}
    signature = private_key.sign(canonical.canonical(payload))
    body = {"payload": payload, "signature": base64.b64encode(signature).decode("ascii")}
    object_key = f"{PREFIX}{seq:020d}-{int(now.timestamp() * 1000)}.json"
    store.put(object_key, canonical.canonical(body))
    return Checkpoint(seq, head_hash, created_at, key_id, object_key)


def read_checkpoints(*, store: ObjectStore, public_key: Ed25519PublicKey) -> list[Checkpoint]:
    """Every checkpoint, signature-checked, in chain order (by seq, then time).

    Not by time alone: replicas' clocks disagree and a host's clock can step back, so a later,
    larger checkpoint may carry an earlier time. Each checkpoint is checked against the chain on
    its own, so the order proves nothing and hides nothing.

    Raises CheckpointInvalid for a forged or malformed checkpoint.
    """
    found = []
    for object_key in store.list(PREFIX):
        try:
            body = json.loads(store.get(object_key))
            payload = body["payload"]
            signature = base64.b64decode(body["signature"], validate=True)
            public_key.verify(signature, canonical.canonical(payload))
            found.append(
                Checkpoint(
                    int(payload["seq"]),
                    str(payload["head_hash"]),
                    str(payload["created_at"]),
                    str(payload["key_id"]),
                    object_key,
                )
            )
        except InvalidSignature:
            raise CheckpointInvalid(f"checkpoint {object_key}: signature does not verify") from None
        except (ValueError, KeyError, TypeError):
            raise CheckpointInvalid(f"checkpoint {object_key}: malformed") from None
    found.sort(key=lambda c: (c.seq, c.created_at, c.object_key))
    return found
