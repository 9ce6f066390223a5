"""The registry's records: push, promotion with four eyes, and which version is in production.

Every push, promotion request, approval, rejection and load is a ``model_audit`` event, written
in the same transaction as the change it records.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aegis.audit import service as audit_service
from aegis.database.core import is_postgres
from aegis.registry import service as registry_service
from aegis.registry import uploads
from aegis.registry.errors import (
    FourEyesRequired,
    ModelExists,
    ModelLocationTaken,
    ModelNotFound,
    PromotionConflict,
)
from aegis.registry.keyset import KeySet
from aegis.registry.models import ModelVersion, PromotionRequest
from aegis.storage.service import location_key, object_url

STAGES = ("staging", "production", "archived")
# promotion_requests.id is a 32-bit INTEGER: PostgreSQL refuses to compare it with a larger value
# (a DataError, answered 422), while SQLite finds nothing. A larger id cannot exist.
MAX_PROMOTION_ID = 2**31 - 1


def audit(
    session: Session,
    event_type: str,
    actor: str,
    *,
    name: str,
    version: str,
    outcome: str = "ok",
    **data: Any,
) -> None:
    audit_service.record_audit_event(
        session=session,
        category="model",
        event_type=event_type,
        actor=actor,
        resource=f"model:{name}/{version}",
        outcome=outcome,
        data={"model": name, "version": version, **data},
    )


def get_version(*, session: Session, name: str, version: str) -> ModelVersion:
    found = session.scalar(
        select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
    )
    if found is None:
        raise ModelNotFound(f"model {name} {version} is not in the registry")
    return found


def production(*, session: Session, name: str) -> ModelVersion:
    found = session.scalar(
        select(ModelVersion).where(ModelVersion.name == name, ModelVersion.stage == "production")
    )
    if found is None:
        raise ModelNotFound(f"model {name} has no production version")
    return found


def list_versions(*, session: Session, name: str | None = None) -> list[ModelVersion]:
    stmt = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.id)
    if name:
        stmt = stmt.where(ModelVersion.name == name)
    return list(session.scalars(stmt))


def push(
    *, session: Session, archive: Path, signature: Path, to: str, keyset: KeySet, actor: str
) -> ModelVersion:
    """Verify the signed archive, record it (staging), then upload archive + signature under
    ``to``.

    The row is claimed first: ``model_versions`` holds each name/version and each archive URI
    once, so of two pushes at once to one location (or of one version) the second waits for the
    first, is refused, and never writes over the archive the first recorded. When the session's
    transaction ends without committing, the upload is removed again (:mod:`.uploads`).
    """
    verified = registry_service.verify_archive(archive, signature.read_bytes(), keyset)
    return _record_push(session, verified, archive=archive, signature=signature, to=to, actor=actor)


def _record_push(
    session: Session,
    verified: registry_service.VerifiedArchive,
    *,
    archive: Path,
    signature: Path,
    to: str,
    actor: str,
) -> ModelVersion:
    name, version = verified.manifest.name, verified.manifest.version
    # Another version's location is refused as taken whatever its spelling, before the
    # spelling itself is looked at.
    _refuse_if_taken(session, name, version, location_key(f"{to.rstrip('/')}/model.tar.gz"))
    # Refuses a --to with credentials, a query, or not in its one spelling before anything is
    # written: the URIs are recorded and printed, and unique as recorded.
    archive_uri = object_url(to, "model.tar.gz")
    signature_uri = object_url(to, "model.tar.gz.sig")
    row = ModelVersion(
        name=name,
        version=version,
        archive_uri=archive_uri,
        signature_uri=signature_uri,
        digest=verified.digest,
        size=verified.size,
        signer_key_id=verified.key_id,
        manifest={
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256}
                for f in verified.manifest.files
            ]
        },
        stage="staging",
        pushed_by=actor,
        created_at=datetime.now(UTC),
    )
    _claim(session, row)
    # taken back if this transaction does not commit: no row would point at the files
    uploads.upload(session, to=to, archive=archive, signature=signature, archive_uri=archive_uri)
    audit(
        session,
        "model.pushed",
        actor,
        name=name,
        version=version,
        digest=f"sha256:{verified.digest}",
        key_id=verified.key_id,
        verification_result="verified",
        archive_uri=row.archive_uri,
    )
    return row


def _refuse_if_taken(session: Session, name: str, version: str, location: str | None) -> None:
    """Refuse a version the registry holds, or an archive ``location`` (a :func:`location_key`)
    a recorded version holds."""
    if session.scalar(
        select(ModelVersion.id).where(ModelVersion.name == name, ModelVersion.version == version)
    ):
        raise ModelExists(f"model {name} {version} is already in the registry")
    # Writing over another version's archive would leave that version unloadable (its digest
    # no longer matches), production included. New versions are recorded in one spelling
    # (object_url), but versions recorded before may name their location in another
    # (file://localhost/..., %61), so every recorded URI is compared as a location: a
    # registry holds versions by the hundred, not by the million.
    if location is None:
        return
    for holder in session.execute(
        select(ModelVersion.name, ModelVersion.version, ModelVersion.archive_uri)
    ):
        if location_key(holder.archive_uri) == location:
            raise ModelLocationTaken(
                f"{holder.archive_uri} holds model {holder.name} {holder.version}: push each "
                "version to its own location, such as .../model-archives/NAME/VERSION/"
            )


def _claim(session: Session, row: ModelVersion) -> None:
    """Insert ``row`` before anything is uploaded. A unique key taken meanwhile by another push
    (on PostgreSQL the insert waits for its transaction) is refused as the check refuses it."""
    try:
        with session.begin_nested():  # a savepoint: the transaction can still read the winner
            session.add(row)
            session.flush()
    except IntegrityError:
        _refuse_if_taken(session, row.name, row.version, location_key(row.archive_uri))
        raise ModelLocationTaken(  # not found again: only if that row was removed meanwhile
            f"another push took model {row.name} {row.version} or {row.archive_uri} meanwhile"
        ) from None


def request_promotion(
    *, session: Session, name: str, version: str, to: str, actor: str
) -> PromotionRequest:
    if to not in STAGES:
        raise PromotionConflict(f"unknown stage {to!r}; one of {', '.join(STAGES)}")
    row = get_version(session=session, name=name, version=version)
    if row.stage == to:
        raise PromotionConflict(f"model {name} {version} is already {to}")
    request = PromotionRequest(
        name=name,
        version=version,
        target_stage=to,
        status="pending",
        requested_by=actor,
        comment="",
        created_at=datetime.now(UTC),
    )
    session.add(request)
    session.flush()  # the id is what approvers name
    audit(
        session,
        "model.promotion_requested",
        actor,
        name=name,
        version=version,
        digest=f"sha256:{row.digest}",
        target_stage=to,
        promotion_id=request.id,
    )
    return request


def _pending(session: Session, promotion_id: int) -> PromotionRequest:
    # locked and re-read: two approvers deciding at once decide one after the other
    request = (
        session.get(PromotionRequest, promotion_id, with_for_update=True, populate_existing=True)
        if promotion_id <= MAX_PROMOTION_ID
        else None
    )
    if request is None:
        raise ModelNotFound(f"promotion request {promotion_id} not found")
    if request.status != "pending":
        raise PromotionConflict(f"promotion request {promotion_id} is already {request.status}")
    return request


def model_lock_key(name: str) -> int:
    """The model's ``pg_advisory_xact_lock`` key: 8 bytes of a hash, as a signed 64-bit
    integer. Two models sharing a key only wait for each other."""
    digest = hashlib.sha256(f"aegis-model\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_versions(session: Session, name: str) -> list[ModelVersion]:
    """Hold the model until the transaction ends, then return every version of it, locked (in
    id order) and re-read: two approvals for different versions of one model, or an approval
    and a bootstrap, take effect one after the other, so the second sees what the first put in
    production instead of missing it (two production versions).

    The row locks alone miss a version inserted by a transaction still open (a bootstrap's), so
    on PostgreSQL a transaction-scoped advisory lock per model comes first; SQLite's
    transactions already hold the database's write lock from BEGIN (IMMEDIATE). Taken before
    any audit record is written (the audit chain's own lock comes after it), so the locks never
    wait on each other in a cycle."""
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": model_lock_key(name)})
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.name == name)
            .order_by(ModelVersion.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def _refuse_if_stale(session: Session, request: PromotionRequest) -> None:
    """A request asks to move the version from where it stood when it was made: once another
    request for that version was approved, this one would move it again unasked (a duplicate
    left pending would silently roll production back)."""
    moved = session.scalars(
        select(PromotionRequest)
        .where(
            PromotionRequest.name == request.name,
            PromotionRequest.version == request.version,
            PromotionRequest.status == "approved",
        )
        .execution_options(populate_existing=True)  # times as stored, like the request's
    ).all()
    for other in moved:
        if other.decided_at is not None and other.decided_at >= request.created_at:
            raise PromotionConflict(
                f"model {request.name} {request.version} moved to {other.target_stage} "
                f"(request {other.id}) after request {request.id} was made; reject it and ask "
                "again"
            )


def approve(*, session: Session, promotion_id: int, actor: str, comment: str = "") -> ModelVersion:
    """Four eyes: the approver must not be the requester. Moves the version to its stage."""
    request = _pending(session, promotion_id)
    if request.requested_by == actor:
        raise FourEyesRequired("a promotion needs an approver other than its requester")
    _lock_versions(session, request.name)
    row = get_version(session=session, name=request.name, version=request.version)
    if row.stage == request.target_stage:  # another request for the same change came first
        raise PromotionConflict(
            f"model {row.name} {row.version} is already {row.stage}; reject request {request.id}"
        )
    _refuse_if_stale(session, request)
    if request.target_stage == "production":
        session.execute(
            update(ModelVersion)
            .where(
                ModelVersion.name == row.name,
                ModelVersion.stage == "production",
                ModelVersion.id != row.id,
            )
            .values(stage="archived")
        )
    row.stage = request.target_stage
    request.status, request.decided_by = "approved", actor
    request.decided_at, request.comment = datetime.now(UTC), comment
    audit(
        session,
        "model.promotion_approved",
        actor,
        name=row.name,
        version=row.version,
        digest=f"sha256:{row.digest}",
        target_stage=row.stage,
        promotion_id=request.id,
        requested_by=request.requested_by,
    )
    audit(
        session,
        "model.promoted",
        actor,
        name=row.name,
        version=row.version,
        digest=f"sha256:{row.digest}",
        stage=row.stage,
    )
    return row


def reject(
    *, session: Session, promotion_id: int, actor: str, comment: str = ""
) -> PromotionRequest:
    request = _pending(session, promotion_id)
    if request.requested_by == actor:
        raise FourEyesRequired("a promotion must be rejected by someone other than its requester")
    request.status, request.decided_by = "rejected", actor
    request.decided_at, request.comment = datetime.now(UTC), comment
    audit(
        session,
        "model.promotion_rejected",
        actor,
        name=request.name,
        version=request.version,
        promotion_id=request.id,
        comment=comment,
    )
    return request


def list_promotions(*, session: Session, status: str | None = None) -> list[PromotionRequest]:
    stmt = select(PromotionRequest).order_by(PromotionRequest.id.desc())
    if status:
        stmt = stmt.where(PromotionRequest.status == status)
    return list(session.scalars(stmt))


def bootstrap_production(
    *, session: Session, archive: Path, signature: Path, to: str, keyset: KeySet
) -> ModelVersion:
    """Embedded mode only: push and mark production at once when the registry is empty.

    The first model of a fresh single-machine install has nobody to approve it; this is
    audited as ``model.bootstrapped`` so it can never pass for a four-eyes promotion. It takes
    the locks an approval takes and, under them, refuses (:class:`ModelExists`, before anything
    is uploaded) when the registry holds any version of the model by now: an approval or a push
    that came first is left to four eyes, never joined by a second production version.
    """
    verified = registry_service.verify_archive(archive, signature.read_bytes(), keyset)
    name = verified.manifest.name
    if present := _lock_versions(session, name):
        raise ModelExists(
            f"model {name} has versions in the registry by now "
            f"({', '.join(f'{v.version} {v.stage}' for v in present)}): the bootstrap fills only "
            "an empty registry; promote with four eyes"
        )
    row = _record_push(
        session,
        verified,
        archive=archive,
        signature=signature,
        to=to,
        actor="system:bootstrap",
    )
    row.stage = "production"
    audit(
        session,
        "model.bootstrapped",
        "system:bootstrap",
        name=row.name,
        version=row.version,
        digest=f"sha256:{row.digest}",
        stage="production",
    )
    return row
