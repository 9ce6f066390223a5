"""Applying signed bundles in the store: an older serial is a rollback, refused in the apply's
own (locked) transaction too, not only by the check the CLI makes before asking."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aegis.database.core import Database
from aegis.policy import export_bundle, parse_policy, verify_bundle
from aegis.policy import service as policy_service
from aegis.policy.bundle import VerifiedBundle
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
