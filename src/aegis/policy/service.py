"""The policy store: versioned documents in the database, the active set, evaluation.

An update never overwrites: it adds a version. Deleting adds a version that deactivates the
policy; restoring makes an old version's document current again (as a new version). Every change
and every evaluation is audited (``policy_audit_logs``) in the same transaction.

The active :class:`PolicySet` is cached per process and rebuilt when the store's generation
counter (a runtime flag bumped by every change, in the same transaction) moves.

A signed bundle is applied only if its serial is above the highest one applied so far (a runtime
flag, never lowered): an older, validly signed bundle would roll the policies back. An explicit
``allow_rollback`` applies it anyway, audited as ``policy.bundle_rollback_forced``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from aegis.audit import service as audit_service
from aegis.core import metrics
from aegis.core.errors import Conflict, NotFound
from aegis.database.core import flush_new
from aegis.flags import service as flags
from aegis.policy.bundle import VerifiedBundle, policy_set_digest
from aegis.policy.document import Policy
from aegis.policy.engine import PolicySet, policies_by_id
from aegis.policy.errors import BundleRollback, InvalidEvaluationRequest
from aegis.policy.loader import field_errors, parse_policy
from aegis.policy.models import PolicyVersion, StoredPolicy
from aegis.policy.request import Decision, EvaluationRequest

GENERATION_FLAG = "policy_generation"
BUNDLE_SERIAL_FLAG = "policy_bundle_serial"  # the highest bundle serial applied; never lowered
MAX_VERSION = 2**31 - 1  # policy_versions.version is a 32-bit INTEGER
REPLACE_CHANGES = frozenset({"sync", "apply"})  # what replace_all's versions record


class PolicyNotFound(NotFound):
    code = "policy_not_found"


class PolicyExists(Conflict):
    code = "policy_exists"


_cache_lock = threading.Lock()
# (database URL, generation) -> (set, digest); one entry per database this process talks to.
_cache: dict[str, tuple[str, PolicySet, str]] = {}


def _now() -> datetime:
    return datetime.now(UTC)


def _bump(session: Session, actor: str) -> None:
    """A new generation token: unique, so a rolled-back change's token can never recur."""
    flags.set_flag(session=session, name=GENERATION_FLAG, value=uuid.uuid4().hex, actor=actor)


def _audit_change(
    session: Session, *, actor: str, policy_id: str, version: int, event: str, change: str
) -> None:
    """Audited as ``policy.<event>`` (create, update, delete, restore); ``change`` is what the
    version records, which says whether a sync or a bundle apply made it."""
    audit_service.record_audit_event(
        session=session,
        category="policy",
        event_type=f"policy.{event}",
        actor=actor,
        resource=f"policy:{policy_id}",
        data={"policy_id": policy_id, "version": version, "change": change},
    )


def _stored(session: Session, policy_id: str, *, lock: bool = True) -> StoredPolicy:
    """The policy's row, locked and re-read: two changes to one policy at once (two admins, a
    sync and an edit) take their version numbers one after the other instead of colliding. A
    read (``lock=False``) takes no lock: it sees the last committed version, at once."""
    row = session.get(StoredPolicy, policy_id, with_for_update=lock, populate_existing=True)
    if row is None:
        raise PolicyNotFound(f"policy {policy_id!r} not found")
    return row


def _add_version(
    session: Session, row: StoredPolicy, policy: Policy, *, event: str, change: str, actor: str
) -> Policy:
    versioned = policy.model_copy(update={"version": row.current_version})
    session.add(
        PolicyVersion(
            policy_id=row.id,
            version=row.current_version,
            document=versioned.canonical_dict(),
            change=change,
            created_by=actor,
        )
    )
    row.updated_at = _now()
    _bump(session, actor)
    _audit_change(
        session,
        actor=actor,
        policy_id=row.id,
        version=row.current_version,
        event=event,
        change=change,
    )
    return versioned


def create(*, session: Session, policy: Policy, actor: str, change: str = "create") -> Policy:
    taken = PolicyExists(f"policy {policy.id!r} already exists; PUT to change it")
    existing = session.get(StoredPolicy, policy.id, with_for_update=True, populate_existing=True)
    if existing is not None and existing.active:
        raise taken
    if existing is None:
        existing = StoredPolicy(id=policy.id, current_version=1, active=True)
        session.add(existing)
        flush_new(session, taken)  # the version row references it
    else:  # re-creating a deleted id continues its history
        existing.current_version += 1
        existing.active = True
    return _add_version(session, existing, policy, event="create", change=change, actor=actor)


def update(
    *, session: Session, policy_id: str, policy: Policy, actor: str, change: str = "update"
) -> Policy:
    if policy.id != policy_id:
        raise Conflict(f"document id {policy.id!r} does not match the URL's {policy_id!r}")
    row = _stored(session, policy_id)
    row.current_version += 1
    row.active = True
    return _add_version(session, row, policy, event="update", change=change, actor=actor)


def delete(*, session: Session, policy_id: str, actor: str, change: str = "delete") -> None:
    row = _stored(session, policy_id)
    if not row.active:
        raise PolicyNotFound(f"policy {policy_id!r} not found")
    current = _version(session, policy_id, row.current_version)
    row.current_version += 1
    row.active = False
    session.add(
        PolicyVersion(
            policy_id=policy_id,
            version=row.current_version,
            document=current.document,
            change=change,
            created_by=actor,
        )
    )
    _bump(session, actor)
    _audit_change(
        session,
        actor=actor,
        policy_id=policy_id,
        version=row.current_version,
        event="delete",
        change=change,
    )


def restore(*, session: Session, policy_id: str, version: int, actor: str) -> Policy:
    old = _version(session, policy_id, version)
    row = _stored(session, policy_id)
    row.current_version += 1
    row.active = True
    return _add_version(
        session, row, parse_policy(old.document), event="restore", change="restore", actor=actor
    )


def _version(session: Session, policy_id: str, version: int) -> PolicyVersion:
    # policy_versions.version is a 32-bit INTEGER: PostgreSQL refuses to compare it with a
    # larger value (a DataError, answered 422) while SQLite finds nothing. It cannot exist.
    found = session.get(PolicyVersion, (policy_id, version)) if version <= MAX_VERSION else None
    if found is None:
        raise PolicyNotFound(f"policy {policy_id!r} has no version {version}")
    return found


def get(*, session: Session, policy_id: str) -> tuple[StoredPolicy, dict[str, Any]]:
    row = _stored(session, policy_id, lock=False)
    if not row.active:
        raise PolicyNotFound(f"policy {policy_id!r} not found")
    return row, _version(session, policy_id, row.current_version).document


def versions(*, session: Session, policy_id: str) -> list[PolicyVersion]:
    _stored(session, policy_id, lock=False)
    return list(
        session.scalars(
            select(PolicyVersion)
            .where(PolicyVersion.policy_id == policy_id)
            .order_by(PolicyVersion.version)
        )
    )


def active_policies(*, session: Session) -> list[Policy]:
    rows = session.execute(
        select(PolicyVersion.document)
        .join(
            StoredPolicy,
            (StoredPolicy.id == PolicyVersion.policy_id)
            & (StoredPolicy.current_version == PolicyVersion.version),
        )
        .where(StoredPolicy.active.is_(True))
        .order_by(StoredPolicy.id)
    )
    return [parse_policy(doc, source=f"policy {doc.get('id')}") for (doc,) in rows]


def active_set(*, session: Session) -> tuple[PolicySet, str]:
    """The active policy set and its digest, rebuilt only when the store changed."""
    generation = flags.get(session=session, name=GENERATION_FLAG, default="0") or "0"
    database = str(session.get_bind().engine.url)
    with _cache_lock:
        cached = _cache.get(database)
    if cached is not None and cached[0] == generation:
        return cached[1], cached[2]
    policies = active_policies(session=session)
    policy_set, digest = PolicySet(policies), policy_set_digest(policies)
    with _cache_lock:
        _cache[database] = (generation, policy_set, digest)
    return policy_set, digest


def parse_request(body: Mapping[str, Any]) -> EvaluationRequest:
    """An evaluation request from JSON, or InvalidEvaluationRequest naming each bad field."""
    try:
        return EvaluationRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidEvaluationRequest(
            field_errors(exc, model=EvaluationRequest), source="request"
        ) from None


def evaluate(
    *, session: Session, request: EvaluationRequest, actor: str, audit: bool = True
) -> tuple[Decision, str]:
    """Decide ``request`` against the active set; audited as ``policy.evaluated``."""
    policy_set, digest = active_set(session=session)
    decision = policy_set.evaluate(request)
    metrics.POLICY_DECISIONS.labels(decision.effect.value).inc()
    if audit:
        audit_service.record_audit_event(
            session=session,
            category="policy",
            event_type="policy.evaluated",
            actor=actor,
            resource=f"{request.resource.namespace}/{request.resource.name}",
            outcome=decision.effect.value,
            data={
                "decision": decision.effect.value,
                "action": request.action,
                "namespace": request.resource.namespace,
                "name": request.resource.name,
                "subjects": sorted(request.subject),
                "policy_id": ",".join(ref.id for ref in decision.policies),
                "policies": [{"id": r.id, "version": r.version} for r in decision.policies],
                "reason": decision.reason,
                "digest": digest,
            },
        )
    return decision, digest


def replace_all(
    *, session: Session, policies: Iterable[Policy], actor: str, change: str = "sync"
) -> dict[str, list[str]]:
    """Make the active set equal ``policies`` (GitOps sync / bundle apply). Returns the diff.

    The versions it adds record ``change`` (``sync`` or ``apply``), those that remove a policy
    ``<change>_delete``, so a policy's history tells them from a hand edit; they are audited as
    ``policy.create``/``update``/``delete`` with that ``change`` in the data."""
    if change not in REPLACE_CHANGES:
        raise ValueError(f"change must be one of {sorted(REPLACE_CHANGES)}, not {change!r}")
    wanted = policies_by_id(policies)
    current = {p.id: p for p in active_policies(session=session)}
    diff: dict[str, list[str]] = {"added": [], "changed": [], "removed": []}
    for policy_id, policy in sorted(wanted.items()):
        old = current.get(policy_id)
        if old is None:
            create(session=session, policy=policy, actor=actor, change=change)
            diff["added"].append(policy_id)
        elif _content(old) != _content(policy):
            update(session=session, policy_id=policy_id, policy=policy, actor=actor, change=change)
            diff["changed"].append(policy_id)
    for policy_id in sorted(set(current) - set(wanted)):
        delete(session=session, policy_id=policy_id, actor=actor, change=f"{change}_delete")
        diff["removed"].append(policy_id)
    return diff


def plan(*, session: Session, policies: Iterable[Policy]) -> dict[str, list[str]]:
    """The diff ``replace_all`` would make, without making it."""
    wanted = policies_by_id(policies)
    current = {p.id: p for p in active_policies(session=session)}
    return {
        "added": sorted(set(wanted) - set(current)),
        "changed": sorted(
            i for i in set(wanted) & set(current) if _content(wanted[i]) != _content(current[i])
        ),
        "removed": sorted(set(current) - set(wanted)),
    }


def _content(policy: Policy) -> dict[str, Any]:
    body = policy.canonical_dict()
    body.pop("version", None)
    return body


# --- signed bundles: rollback protection -------------------------------------------------------
def bundle_audit_data(bundle: VerifiedBundle, highest: int) -> dict[str, Any]:
    """What the audit records of an applied, forced or refused bundle."""
    return {
        "serial": bundle.serial,
        "highest_applied_serial": highest,
        "format": bundle.format,
        "digest": bundle.digest,
        "key_id": bundle.key_id,
    }


def _is_rollback(bundle: VerifiedBundle, highest: int) -> bool:
    """A bundle with no serial (v1) may be of any age, so it counts as one."""
    return bundle.serial is None or bundle.serial <= highest


def check_bundle(*, session: Session, bundle: VerifiedBundle, allow_rollback: bool) -> int:
    """The highest serial applied so far; raises :class:`BundleRollback` if ``bundle`` is not
    newer, unless ``allow_rollback``. A read before asking: :func:`apply_bundle` checks again."""
    highest = int(flags.get(session=session, name=BUNDLE_SERIAL_FLAG, default="0") or "0")
    if _is_rollback(bundle, highest) and not allow_rollback:
        raise BundleRollback(serial=bundle.serial, highest=highest)
    return highest


def apply_bundle(
    *, session: Session, bundle: VerifiedBundle, actor: str, allow_rollback: bool = False
) -> dict[str, list[str]]:
    """Make the active set equal a verified bundle's, refusing an older one (see the module's
    docstring). The serial is recorded even when the set does not change, so that an older
    bundle is refused afterwards whatever the active set was before. Returns the diff."""
    highest = int(
        flags.get_for_update(session=session, name=BUNDLE_SERIAL_FLAG, default="0", actor=actor)
    )
    rollback = _is_rollback(bundle, highest)
    if rollback and not allow_rollback:
        raise BundleRollback(serial=bundle.serial, highest=highest)
    diff = replace_all(session=session, policies=bundle.policies, actor=actor, change="apply")
    if not rollback:
        flags.set_flag(
            session=session, name=BUNDLE_SERIAL_FLAG, value=str(bundle.serial), actor=actor
        )
    audit_service.record_audit_event(
        session=session,
        category="policy",
        event_type="policy.bundle_rollback_forced" if rollback else "policy.bundle_applied",
        actor=actor,
        resource=f"policy-bundle:{bundle.digest}",
        data=bundle_audit_data(bundle, highest) | {"changes": diff},
    )
    return diff
