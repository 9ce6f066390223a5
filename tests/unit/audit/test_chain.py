"""The hash chain: appends, and every kind of tampering `aegis audit verify` must catch."""

from __future__ import annotations

import functools
import hashlib
import itertools
import uuid
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from aegis.audit import canonical, checkpoint, verify
from aegis.audit import service as audit_service
from aegis.audit.models import AuditEntry
from aegis.database.core import Database
from aegis.storage.service import ObjectStore, open_store
from tests.support.audit import forge_tail
from tests.support.races import at_once


@pytest.fixture
def store() -> ObjectStore:
    return open_store(f"memory://audit-{uuid.uuid4().hex}")


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _record(database: Database, count: int, **fields: object) -> None:
    with database.unit_of_work() as session:
        for i in range(count):
            audit_service.record_audit_event(
                session=session,
                category="auth",
                event_type="login.succeeded",
                actor=str(fields.get("actor", f"user{i}")),
                data={"i": i},
            )


def _verify(
    database: Database, store: ObjectStore | None = None, key: Ed25519PrivateKey | None = None
) -> verify.VerifyReport:
    with database.unit_of_work() as session:
        return verify.verify(
            session=session, store=store, public_key=key.public_key() if key else None
        )


def _checkpoint(
    database: Database, store: ObjectStore, key: Ed25519PrivateKey, now: datetime | None = None
) -> None:
    with database.unit_of_work() as session:
        checkpoint.write_checkpoint(session=session, store=store, private_key=key, now=now)


def _sql(database: Database, statement: str) -> None:
    with database.engine.begin() as conn:
        conn.execute(text(statement))


def test_appends_are_gapless_and_linked(database: Database) -> None:
    _record(database, 5)
    with database.unit_of_work() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == canonical.GENESIS_HASH
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    assert _verify(database).ok


def test_writers_appending_at_once_leave_one_gapless_chain(database: Database) -> None:
    # every service and job appends; eight transactions at once still make one chain
    at_once([functools.partial(_record, database, 5, actor=f"writer{n}") for n in range(8)])
    report = _verify(database)
    assert report.ok and report.entries == 40 and report.head_seq == 40


def test_a_rolled_back_append_leaves_no_gap(database: Database) -> None:
    _record(database, 2)
    with pytest.raises(RuntimeError), database.unit_of_work() as session:
        audit_service.record_audit_event(
            session=session, category="auth", event_type="x", actor="a"
        )
        raise RuntimeError("the action failed; its audit record goes with it")
    _record(database, 1)
    report = _verify(database)
    assert report.ok and report.head_seq == 3


def test_modified_field_is_caught(database: Database) -> None:
    _record(database, 5)
    _sql(database, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
    report = _verify(database)
    assert not report.ok
    assert report.problems[0].startswith("entry 3: contents do not match")


def test_modified_data_is_caught(database: Database) -> None:
    _record(database, 3)
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET data = :d WHERE seq = 2"), {"d": '{"i":99}'})
    assert _verify(database).problems[0].startswith("entry 2:")


def test_data_rewritten_with_the_same_meaning_is_caught(database: Database) -> None:
    """The hash covers the stored bytes: re-spacing or re-ordering the JSON is a change."""
    _record(database, 3)
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET data = :d WHERE seq = 2"), {"d": '{ "i": 1 }'})
    assert _verify(database).problems[0].startswith("entry 2:")


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.text()
            | st.floats(allow_nan=False, allow_infinity=False),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
            max_leaves=8,
        ),
        max_size=4,
    ),
    text_field=st.text(),
    seq=st.integers(min_value=1, max_value=2**62),
)
def test_entry_hash_is_the_documented_hash(
    data: dict[str, object], text_field: str, seq: int
) -> None:
    """entry_hash = SHA-256(canonical({... "data": <the data object> ...})), as docs/audit.md
    defines it for independent verifiers, however the implementation assembles the bytes."""
    created = datetime(2026, 11, 23, 10, 0, 0, 5, tzinfo=UTC)
    fields = {
        "seq": seq,
        "event_id": str(uuid.UUID(int=seq)),
        "created_at": created,
        "category": "system",
        "event_type": "alert.received",
        "actor": text_field,
        "resource": text_field[::-1],
        "outcome": "ok",
        "data": canonical.canonical(data).decode("utf-8"),
        "prev_hash": "ab" * 32,
    }
    documented = {**fields, "created_at": canonical.iso(created), "data": data}
    expected = hashlib.sha256(canonical.canonical(documented)).hexdigest()
    assert canonical.entry_hash(**fields) == expected  # type: ignore[arg-type]


def test_deleted_row_is_a_visible_hole(database: Database) -> None:
    _record(database, 5)
    _sql(database, "DELETE FROM audit_log WHERE seq = 2")
    assert _verify(database).problems[0] == (
        "entry 2: missing (next entry is 3): rows were deleted"
    )


@pytest.mark.parametrize("seq", [0, -3])
def test_a_row_numbered_below_1_is_named_as_such_not_as_a_deletion(
    database: Database, seq: int
) -> None:
    # It was reported as "entry 1: missing (next entry is 0): rows were deleted".
    _record(database, 3)
    _sql(
        database,
        "INSERT INTO audit_log (seq, event_id, created_at, category, event_type, actor, "
        "resource, outcome, data, prev_hash, entry_hash) "
        f"SELECT {seq}, 'forged', created_at, category, event_type, actor, resource, outcome, "
        "data, prev_hash, entry_hash FROM audit_log WHERE seq = 1",
    )
    assert _verify(database).problems == [
        f"entry {seq}: sequence numbers start at 1: a row was inserted before the first entry "
        "(forged)"
    ]


def test_reordered_rows_are_caught(database: Database) -> None:
    _record(database, 4)
    _sql(database, "UPDATE audit_log SET seq = 100 WHERE seq = 2")
    _sql(database, "UPDATE audit_log SET seq = 2 WHERE seq = 3")
    _sql(database, "UPDATE audit_log SET seq = 3 WHERE seq = 100")
    report = _verify(database)
    assert not report.ok and report.problems[0].startswith("entry 2:")


def test_truncated_tail_is_caught_by_the_checkpoint(
    database: Database, store: ObjectStore, key: Ed25519PrivateKey
) -> None:
    _record(database, 6)
    _checkpoint(database, store, key)
    _sql(database, "DELETE FROM audit_log WHERE seq > 4")
    assert _verify(database).ok  # the chain alone cannot tell
    report = _verify(database, store, key)
    assert "tail was truncated or the database is older" in report.problems[0]


def test_database_restored_to_an_older_point_is_caught(
    database: Database, store: ObjectStore, key: Ed25519PrivateKey
) -> None:
    _record(database, 3)
    _checkpoint(database, store, key)
    _record(database, 3)
    _checkpoint(database, store, key)
    _sql(
        database, "DELETE FROM audit_log WHERE seq > 3"
    )  # what a restore of the old backup looks like
    report = _verify(database, store, key)
    assert "older than the checkpoint" in report.problems[0]


def test_a_rewritten_chain_is_caught_by_the_checkpoint(
    database: Database, store: ObjectStore, key: Ed25519PrivateKey
) -> None:
    _record(database, 4)
    _checkpoint(database, store, key)
    # an attacker with the database recomputes every hash after changing entry 2
    with database.unit_of_work() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        prev = canonical.GENESIS_HASH
        for entry in entries:
            if entry.seq == 2:
                entry.actor = "mallory"
            entry.prev_hash = prev
            entry.entry_hash = canonical.entry_hash(
                seq=entry.seq,
                event_id=entry.event_id,
                created_at=entry.created_at,
                category=entry.category,
                event_type=entry.event_type,
                actor=entry.actor,
                resource=entry.resource,
                outcome=entry.outcome,
                data=entry.data,
                prev_hash=prev,
            )
            prev = entry.entry_hash
    assert _verify(database).ok
    report = _verify(database, store, key)
    assert "the chain was rewritten" in report.problems[0]


def test_forged_checkpoint_is_caught(
    database: Database, store: ObjectStore, key: Ed25519PrivateKey
) -> None:
    _record(database, 2)
    _checkpoint(database, store, Ed25519PrivateKey.generate())  # not the platform key
    report = _verify(database, store, key)
    assert "signature does not verify" in report.problems[0]


def test_a_checkpoint_written_after_a_rollback_does_not_hide_it(
    database: Database, store: ObjectStore, key: Ed25519PrivateKey
) -> None:
    _record(database, 5)
    _checkpoint(database, store, key)
    _sql(database, "DELETE FROM audit_log WHERE seq > 2")
    _checkpoint(database, store, key)  # written after a rollback: goes backwards
    report = _verify(database, store, key)
    assert not report.ok
    assert "older than the checkpoint" in report.problems[0]


def test_checkpoints_from_clocks_that_disagree_are_not_tampering(
    database: Database, store: ObjectStore, key: Ed25519PrivateKey
) -> None:
    # two backend replicas checkpoint the same chain; the second's clock runs a minute behind,
    # so its later, larger checkpoint carries the earlier time
    _record(database, 3)
    _checkpoint(database, store, key, now=datetime(2026, 11, 24, 12, 1, tzinfo=UTC))
    _record(database, 3)
    _checkpoint(database, store, key, now=datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    report = _verify(database, store, key)
    assert report.ok, report.problems
    assert report.checkpoints == 2
    # and a rewrite under the later checkpoint is still caught, whatever its time
    _sql(database, "DELETE FROM audit_log WHERE seq > 3")
    _record(database, 3, actor="mallory")
    report = _verify(database, store, key)
    assert "the chain was rewritten" in report.problems[0]


def test_executed_action_without_a_prior_allow_is_caught(database: Database) -> None:
    with database.unit_of_work() as session:
        audit_service.record_audit_event(
            session=session,
            category="action",
            event_type="action.allowed",
            actor="policy",
            data={"action_id": "a1"},
        )
        audit_service.record_audit_event(
            session=session,
            category="action",
            event_type="action.executed",
            actor="executor",
            data={"action_id": "a1"},
        )
    assert _verify(database).ok
    with database.unit_of_work() as session:
        audit_service.record_audit_event(
            session=session,
            category="action",
            event_type="action.executed",
            actor="executor",
            data={"action_id": "a2"},
        )
    assert "action a2 was executed with no allow" in _verify(database).problems[0]


def test_typed_views_expose_runbook_columns(database: Database) -> None:
    with database.unit_of_work() as session:
        audit_service.record_audit_event(
            session=session,
            category="action",
            event_type="action.executed",
            actor="executor",
            data={
                "action_id": "a9",
                "action": "scale_deployment",
                "namespace": "staging",
                "name": "web",
                "status": "succeeded",
                "requested_by": "alice",
            },
        )
        audit_service.record_audit_event(
            session=session,
            category="model",
            event_type="model.loaded",
            actor="engine",
            data={
                "model": "m",
                "version": "0.1",
                "digest": "sha256:x",
                "verification_result": "verified",
            },
        )
    with database.engine.connect() as conn:
        action = conn.execute(
            text(
                "SELECT action_type, namespace, resource_name, status, requested_by "
                "FROM action_audit_logs"
            )
        ).one()
        model = conn.execute(
            text("SELECT model, version, verification_result FROM model_audit")
        ).one()
    assert tuple(action) == ("scale_deployment", "staging", "web", "succeeded", "alice")
    assert tuple(model) == ("m", "0.1", "verified")


@pytest.mark.parametrize(
    ("category", "event_type"),
    [("action", "action.executed"), ("auth", "login.succeeded"), ("system", "alert.received")],
)
@pytest.mark.parametrize("data", ["[]", "null", "not json", '"a"'])
def test_a_forged_entry_whose_data_is_no_object_is_reported_not_raised(
    database: Database, data: str, category: str, event_type: str
) -> None:
    """A row appended past the last checkpoint with its hash recomputed is only caught by the
    next checkpoint; until then the verifier must still finish and name it. Aegis writes every
    entry's data as a JSON object, whatever its category: one that is not was forged (only
    action entries were checked, so such a row in another category passed)."""
    _record(database, 2)
    seq = forge_tail(database, category=category, event_type=event_type, data=data)
    report = _verify(database)
    assert report.problems == [f"entry {seq}: data is not a JSON object (forged)"]


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)  # PostgreSQL refuses one
def test_a_timestamp_that_cannot_be_read_back_is_reported(database: Database) -> None:
    """SQLite stores any text in a DATETIME column; one that does not parse stopped the
    verifier with a ValueError instead of naming the entry."""
    _record(database, 5)
    _sql(database, "UPDATE audit_log SET created_at = 'garbage' WHERE seq = 3")
    report = _verify(database)
    assert report.problems == ["entry 3: a stored value cannot be read back (modified)"]
