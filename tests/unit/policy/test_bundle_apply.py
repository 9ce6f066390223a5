"""Applying signed bundles in the store: an older serial is a rollback, refused in the apply's
own (locked) transaction too, not only by the check the CLI makes before asking."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from aegis.audit.models import AuditEntry
from aegis.database.core import Database
from aegis.policy import export_bundle, parse_policy, verify_bundle
from aegis.policy import service as policy_service
from aegis.policy.bundle import VerifiedBundle
from aegis.policy.document import Policy
from aegis.policy.errors import BundleRollback
from tests.support.races import race

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def _bundle(serial: int, effect: str) -> VerifiedBundle:
    policy = parse_policy(
        {
            "id": "demo",
            "effect": effect,
            "subjects": ["*"],
            "actions": ["*"],
            "resources": {"namespaces": ["demo"]},
        }
    )
    return verify_bundle(export_bundle([policy], KEY, serial=serial), [KEY.public_key()])


def _effects(database: Database) -> list[str]:
    with database.unit_of_work() as session:
        return [p.effect.value for p in policy_service.active_policies(session=session)]


def _apply(database: Database, bundle: VerifiedBundle, *, allow_rollback: bool = False) -> None:
    with database.unit_of_work() as session:
        policy_service.apply_bundle(
            session=session, bundle=bundle, actor="test", allow_rollback=allow_rollback
        )


def test_apply_refuses_an_older_serial_even_past_the_early_check(database: Database) -> None:
    older, newer = _bundle(6, "allow"), _bundle(7, "deny")
    with database.unit_of_work() as session:  # both checked before either is applied
        for bundle in (older, newer):
            policy_service.check_bundle(session=session, bundle=bundle, allow_rollback=False)
    _apply(database, newer)
    with pytest.raises(BundleRollback, match="serial 6 is not greater than serial 7"):
        _apply(database, older)
    assert _effects(database) == ["deny"]


def test_a_forced_rollback_never_lowers_the_highest_serial(database: Database) -> None:
    _apply(database, _bundle(7, "deny"))
    _apply(database, _bundle(3, "allow"), allow_rollback=True)
    assert _effects(database) == ["allow"]
    with pytest.raises(BundleRollback, match="serial 5 is not greater than serial 7"):
        _apply(database, _bundle(5, "allow"))
    _apply(database, _bundle(8, "deny"))
    assert _effects(database) == ["deny"]


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
def test_an_older_bundle_applied_meanwhile_waits_and_is_refused(database: Database) -> None:
    # On a new install (no serial recorded yet) two applies at once: the older one must not
    # read "nothing applied" while the newer one's transaction is still open.
    def apply_older() -> None:
        _apply(database, _bundle(6, "allow"))

    with database.unit_of_work() as session:
        policy_service.apply_bundle(session=session, bundle=_bundle(7, "deny"), actor="test")
        racing = race(apply_older)
    with pytest.raises(BundleRollback, match="serial 6 is not greater than serial 7"):
        racing.done()
    assert _effects(database) == ["deny"]


def _policy(policy_id: str, effect: str) -> Policy:
    return parse_policy(
        {
            "id": policy_id,
            "effect": effect,
            "subjects": ["*"],
            "actions": ["*"],
            "resources": {"namespaces": ["demo"]},
        }
    )


def _changes(database: Database, policy_id: str) -> list[tuple[int, str]]:
    with database.unit_of_work() as session:
        found = policy_service.versions(session=session, policy_id=policy_id)
        return [(v.version, v.change) for v in found]


def _audited_changes(database: Database) -> list[tuple[str, str | None, str]]:
    with database.unit_of_work() as session:
        rows = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.event_type.in_(["policy.create", "policy.update", "policy.delete"]))
            .order_by(AuditEntry.seq)
        )
        return [(r.event_type, r.resource, json.loads(r.data)["change"]) for r in rows]


def test_a_sync_records_its_versions_as_sync_and_a_removal_as_sync_delete(
    database: Database,
) -> None:
    """A git sync's versions were stored as create/update/delete, like a hand edit."""
    with database.unit_of_work() as session:
        policy_service.create(session=session, policy=_policy("by-hand", "allow"), actor="admin")
    for wanted in ([_policy("synced", "allow")], [_policy("synced", "deny")], []):
        with database.unit_of_work() as session:
            policy_service.replace_all(session=session, policies=wanted, actor="git")
    assert _changes(database, "synced") == [(1, "sync"), (2, "sync"), (3, "sync_delete")]
    assert _changes(database, "by-hand") == [(1, "create"), (2, "sync_delete")]
    assert _audited_changes(database) == [
        ("policy.create", "policy:by-hand", "create"),
        ("policy.create", "policy:synced", "sync"),
        ("policy.delete", "policy:by-hand", "sync_delete"),
        ("policy.update", "policy:synced", "sync"),
        ("policy.delete", "policy:synced", "sync_delete"),
    ]


def test_a_bundle_apply_records_its_versions_as_apply(database: Database) -> None:
    _apply(database, _bundle(1, "allow"))
    _apply(database, _bundle(2, "deny"))
    with database.unit_of_work() as session:
        policy_service.apply_bundle(
            session=session,
            bundle=verify_bundle(export_bundle([], KEY, serial=3), [KEY.public_key()]),
            actor="test",
        )
    assert _changes(database, "demo") == [(1, "apply"), (2, "apply"), (3, "apply_delete")]
