"""A push's upload, taken back when the push's transaction does not commit.

A push records its version first (the row claims the name/version and the archive location),
then uploads the archive and its signature, and the caller's unit of work commits. When that
transaction ends any other way (the commit refused, the connection lost, an error after the
upload), no row points at what was uploaded: the files are removed again, so a failed push
leaves the store as it was.

By the time the transaction has ended, another push of the same location may have claimed it,
uploaded its own archive and committed. So the removal first claims the location itself, in a
transaction of its own that is never committed: a placeholder row with the same archive URI
(recorded in its one spelling, :func:`aegis.storage.service.canonical_url`, so the same string
for every push to that location).
Its insert waits for a push still between claim and commit (SQLite: the write lock taken at
BEGIN) and is refused when a recorded version holds the location; only while the placeholder
holds it are the files removed. Removing is best effort: when it cannot be done (the database
or the store unreachable), a warning names the location and the files stay.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from aegis.core.logging import get_logger
from aegis.registry.models import ModelVersion
from aegis.storage.base import ObjectStore
from aegis.storage.errors import StorageError
from aegis.storage.service import open_store, redact_url

log = get_logger(__name__)
ARCHIVE_KEY, SIGNATURE_KEY = "model.tar.gz", "model.tar.gz.sig"


def upload(session: Session, *, to: str, archive: Path, signature: Path, archive_uri: str) -> None:
    """Upload ``archive`` and ``signature`` under ``to`` (the caller has claimed ``archive_uri``
    in ``session``); if ``session``'s transaction then ends without committing, remove them."""
    location = to.rstrip("/")
    store = open_store(location)
    started: list[str] = []
    _unless_committed(session, lambda: _take_back(session, store, location, archive_uri, started))
    for key, path in ((ARCHIVE_KEY, archive), (SIGNATURE_KEY, signature)):
        started.append(key)  # before the put: a put that failed may still have written
        store.put_file(key, path)


def _unless_committed(session: Session, act: Callable[[], None]) -> None:
    """Call ``act`` once the session's (outermost) transaction ends, unless it committed."""
    root = session.get_transaction()
    committed = False

    def after_commit(_: Session) -> None:
        nonlocal committed
        # fired for savepoints too: the outermost is the one committing with none open
        committed = committed or not session.in_nested_transaction()

    # Listeners cannot be removed while an event is dispatched; these stay with the session,
    # inert once ``root`` has ended (a session's transaction is never ``root`` again).
    def after_transaction_end(_: Session, ended: SessionTransaction) -> None:
        if ended is root and not committed:
            act()

    event.listen(session, "after_commit", after_commit)
    event.listen(session, "after_transaction_end", after_transaction_end)


def _take_back(
    session: Session, store: ObjectStore, location: str, archive_uri: str, started: list[str]
) -> None:
    """Remove ``started`` keys from ``store`` unless a recorded version holds ``archive_uri``.
    Never raises: it runs while the failed push's own error is on its way to the caller."""
    if not started:
        return
    try:
        with Session(session.get_bind().engine) as claim:
            if not _hold(claim, archive_uri):
                log.info("model_push_upload_kept", location=redact_url(location))
                return
            for key in reversed(started):
                store.delete(key)
            claim.rollback()  # the placeholder is never recorded
    except Exception as exc:  # best effort: the push's own error goes on
        log.warning(
            "model_push_cleanup_failed",
            location=redact_url(location),
            keys=started,
            error=exc.message if isinstance(exc, StorageError) else type(exc).__name__,
            hint="remove these files unless a model version lists this archive_uri",
        )
        return
    log.info("model_push_upload_removed", location=redact_url(location), keys=started)


def _hold(session: Session, archive_uri: str) -> bool:
    """Claim ``archive_uri`` with a placeholder row in ``session``'s open transaction; False
    when a recorded version holds it (the files there are that version's)."""
    placeholder = ModelVersion(
        name=f"aegis:push-cleanup:{uuid.uuid4().hex}",  # never a model's name
        version="-",
        archive_uri=archive_uri,
        signature_uri="",
        digest="",
        size=0,
        signer_key_id="",
        manifest={},
        stage="archived",
        pushed_by="system:push-cleanup",
        created_at=datetime.now(UTC),
    )
    try:
        with session.begin_nested():
            session.add(placeholder)
            session.flush()
    except IntegrityError:
        return False
    return True
