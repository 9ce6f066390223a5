"""``aegis audit verify``: walk the chain and the checkpoints, report the first bad entry.

Detected: a modified field (hash mismatch), a deleted row (a hole in the gapless sequence), a
reordered row (broken prev_hash link), a truncated tail or a database older than the last
checkpoint (checkpoint beyond the head), a rewritten chain (checkpoint hash differs), a forged
checkpoint, an entry whose data is not a JSON object (forged), and an executed action with no
allow or approval recorded before it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from aegis.audit import canonical, keys
from aegis.audit.checkpoint import PREFIX, Checkpoint, read_checkpoints
from aegis.audit.errors import AuditError, CheckpointInvalid
from aegis.audit.models import AuditEntry
from aegis.storage.service import ObjectStore

BATCH = 5000
# An executed action must follow one of these for the same action_id.
AUTHORISING_EVENTS = {"action.allowed", "action.approved"}
EXECUTED_EVENT = "action.executed"


@dataclass
class VerifyReport:
    entries: int = 0
    checkpoints: int = 0
    head_seq: int = 0
    head_hash: str = canonical.GENESIS_HASH
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _walk_chain(
    session: Session,
    report: VerifyReport,
    wanted: set[int],
    progress: Callable[[int], None] | None,
) -> dict[int, str]:
    """Check every link; return seq -> hash for the ``wanted`` (checkpointed) entries."""
    stmt = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=BATCH)
    result = session.scalars(stmt)
    try:
        return _walk(result, report, wanted, progress)
    except (ValueError, TypeError):  # a stored value the driver cannot read back (SQLite)
        seq = _unreadable(session, after=report.entries)
        report.problems.append(f"entry {seq}: a stored value cannot be read back (modified)")
        return {}
    finally:
        result.close()  # a server-side cursor on PostgreSQL; stopping early must release it


def _unreadable(session: Session, *, after: int) -> int | str:
    """The seq of the first entry after ``after`` that cannot be loaded (rows are read in
    batches, so the failing batch does not say which)."""
    for seq in session.scalars(
        select(AuditEntry.seq).where(AuditEntry.seq > after).order_by(AuditEntry.seq)
    ):
        try:
            session.execute(
                select(AuditEntry)
                .where(AuditEntry.seq == seq)
                .execution_options(populate_existing=True)
            ).scalar_one()
        except (ValueError, TypeError):
            return int(seq)
    return f"after {after}"


def _walk(
    entries: Iterable[AuditEntry],
    report: VerifyReport,
    wanted: set[int],
    progress: Callable[[int], None] | None,
) -> dict[int, str]:
    expected_seq = 1
    prev_hash = canonical.GENESIS_HASH
    authorised: set[str] = set()
    hashes: dict[int, str] = {}
    for entry in entries:
        problem = _link_problem(entry, expected_seq, prev_hash)
        data = None if problem else _data(entry)
        if data is None:  # Aegis writes data as an object: this row's hash was recomputed
            report.problems.append(
                problem or f"entry {entry.seq}: data is not a JSON object (forged)"
            )
            return hashes
        _check_authorisation(entry, data, authorised, report)
        if report.problems:
            return hashes
        if entry.seq in wanted:
            hashes[entry.seq] = entry.entry_hash
        prev_hash = entry.entry_hash
        expected_seq += 1
        report.entries += 1
        if progress and report.entries % BATCH == 0:
            progress(BATCH)
    report.head_seq = expected_seq - 1
    report.head_hash = prev_hash
    return hashes


def _link_problem(entry: AuditEntry, expected_seq: int, prev_hash: str) -> str | None:
    """What is wrong with ``entry``'s place in the chain or its hash, if anything."""
    if entry.seq < expected_seq:  # rows come in seq order, so only below 1 at the start
        return (
            f"entry {entry.seq}: sequence numbers start at 1: a row was inserted before the "
            "first entry (forged)"
        )
    if entry.seq != expected_seq:
        return f"entry {expected_seq}: missing (next entry is {entry.seq}): rows were deleted"
    recomputed = canonical.entry_hash(
        seq=entry.seq,
        event_id=entry.event_id,
        created_at=entry.created_at,
        category=entry.category,
        event_type=entry.event_type,
        actor=entry.actor,
        resource=entry.resource,
        outcome=entry.outcome,
        data=entry.data,
        prev_hash=entry.prev_hash,
    )
    if recomputed != entry.entry_hash:
        return f"entry {entry.seq}: contents do not match its hash (modified)"
    if entry.prev_hash != prev_hash:
        return f"entry {entry.seq}: does not link to entry {entry.seq - 1} (reordered or replaced)"
    return None


def _data(entry: AuditEntry) -> dict[str, Any] | None:
    """The entry's data, or None when it is not a JSON object (every writer stores one)."""
    try:
        data = json.loads(entry.data)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _check_authorisation(
    entry: AuditEntry, data: dict[str, Any], authorised: set[str], report: VerifyReport
) -> None:
    if entry.category != "action":
        return
    action_id = data.get("action_id")
    if entry.event_type in AUTHORISING_EVENTS and action_id:
        authorised.add(str(action_id))
    elif entry.event_type == EXECUTED_EVENT and str(action_id) not in authorised:
        report.problems.append(
            f"entry {entry.seq}: action {action_id} was executed with no allow or approval "
            "recorded before it"
        )


def _check_checkpoints(
    checkpoints: list[Checkpoint], hashes: dict[int, str], report: VerifyReport
) -> None:
    for cp in checkpoints:  # in seq order
        if cp.seq > report.head_seq:
            report.problems.append(
                f"checkpoint {cp.object_key}: the chain ends at {report.head_seq} but was signed "
                f"at {cp.seq}: the tail was truncated or the database is older than the checkpoint"
            )
            return
        if cp.seq and hashes.get(cp.seq) != cp.head_hash:
            report.problems.append(
                f"checkpoint {cp.object_key}: entry {cp.seq} differs from the signed head "
                "(the chain was rewritten)"
            )
            return


def verification_key(*, path: Path, store: ObjectStore) -> Ed25519PublicKey | None:
    """The public key checkpoints are checked with; None only while the store holds none.

    Fails closed: once checkpoints exist, a key that is missing (a mistyped path) would
    silently turn off truncation and rewrite detection, so it raises AuditError naming the
    setting and the path. A key that exists but cannot be loaded always raises.
    """
    if path.exists():
        return keys.load_public_key(path)
    signed = len(store.list(PREFIX))
    if signed:
        raise AuditError(
            f"no audit verification key at {path} (AUDIT_VERIFY_KEY_FILE): the audit store "
            f"holds {signed} signed checkpoint(s) that cannot be checked without it"
        )
    return None


def verify(
    *,
    session: Session,
    store: ObjectStore | None,
    public_key: Ed25519PublicKey | None,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    report = VerifyReport()
    checkpoints: list[Checkpoint] = []
    checkpoint_error: str | None = None
    if store is not None and public_key is not None:
        try:
            checkpoints = read_checkpoints(store=store, public_key=public_key)
        except CheckpointInvalid as exc:
            checkpoint_error = exc.message + " (forged or corrupted)"
    hashes = _walk_chain(session, report, {cp.seq for cp in checkpoints}, progress)
    if report.problems:
        return report
    if checkpoint_error:
        report.problems.append(checkpoint_error)
        return report
    report.checkpoints = len(checkpoints)
    _check_checkpoints(checkpoints, hashes, report)
    return report
