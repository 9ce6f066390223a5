"""Turn Alertmanager webhooks into deduplicated alerts grouped into incidents (the rules:
:mod:`aegis.incidents.grouping`), and read incidents back.

* Webhooks that touch the same alerts or workloads are ingested one at a time: an Alertmanager
  HA pair delivers the same notification twice at once, and both copies must find one alert and
  one incident. On PostgreSQL each webhook takes a transaction-scoped advisory lock per
  fingerprint and per workload it names (in sorted order, so two webhooks never deadlock), and
  webhooks about different workloads proceed side by side up to the audit append; a webhook
  naming more than :data:`MAX_KEY_LOCKS` of them takes one exclusive lock instead (bounding
  PostgreSQL's lock table). On SQLite every transaction holds the database write lock.
* Every change is an audit event, appended in the same transaction as the change.

A webhook costs a constant number of statements whatever its size (two lookups, one INSERT or
UPDATE per table touched, :mod:`aegis.database.bulk`), so a group of 50 alerts is not 150
round trips.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from aegis.audit import service as audit_service
from aegis.core import metrics
from aegis.core.logging import get_logger
from aegis.database.bulk import insert_rows, update_rows
from aegis.database.core import is_postgres
from aegis.incidents.errors import IncidentNotFound
from aegis.incidents.grouping import (
    ALERTS,
    INCIDENT_STATE,
    INCIDENTS,
    Batch,
    apply_alert,
    is_stale,
    open_incident_state,
    placement,
    resolve_finished_incidents,
)
from aegis.incidents.models import Alert, Incident
from aegis.incidents.schemas import IngestResult, WebhookPayload

log = get_logger(__name__)

# pg_advisory_xact_lock key: the bytes "AEGISINC" as a signed 64-bit integer. Every webhook
# holds it shared (with its per-key locks) or, when it names too many keys, exclusive.
INGEST_LOCK_KEY = int.from_bytes(b"AEGISINC", "big", signed=True)
# Per-key locks use the two-integer advisory lock space (separate from the 64-bit one): this
# class id ("AI" + "IN") and a 32-bit hash of the fingerprint or workload.
INGEST_LOCK_CLASS = int.from_bytes(b"AIIN", "big", signed=True)
MAX_KEY_LOCKS = 128
# incidents.id is a 32-bit INTEGER: PostgreSQL refuses to compare it with a larger value (a
# DataError, answered 422), while SQLite finds nothing. A larger id cannot exist.
MAX_INCIDENT_ID = 2**31 - 1


def _key_lock(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


def _lock_ingest(session: Session, fingerprints: list[str], keys: set[str]) -> None:
    """Serialise this webhook with the others that name one of its alerts or workloads."""
    if not is_postgres(session):
        return  # SQLite: the connection already holds the database write lock (BEGIN IMMEDIATE)
    locks = sorted(
        {_key_lock("f:" + f) for f in fingerprints} | {_key_lock("w:" + k) for k in keys}
    )
    if len(locks) > MAX_KEY_LOCKS:
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": INGEST_LOCK_KEY})
        return
    session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": INGEST_LOCK_KEY})
    session.execute(  # unnest yields the sorted array in order: locks are taken in that order
        text(
            "SELECT count(pg_advisory_xact_lock(:cls, k)) FROM unnest(CAST(:locks AS int[])) AS k"
        ),
        {"cls": INGEST_LOCK_CLASS, "locks": locks},
    )


def ingest(
    *, session: Session, payload: WebhookPayload, actor: str = "alertmanager"
) -> IngestResult:
    # Last occurrence wins when a payload repeats a fingerprint.
    alerts = {a.fingerprint: a for a in payload.alerts}
    placed = {fp: placement(a.labels) for fp, a in alerts.items()}  # before taking the lock
    keys = {key for _, _, key in placed.values()}
    _lock_ingest(session, list(alerts), keys)
    now = datetime.now(UTC)
    batch = Batch(session, actor, now, placed)
    batch.result.received = len(payload.alerts)
    batch.result.duplicates = len(payload.alerts) - len(alerts)
    existing = {
        row.fingerprint: row._asdict()
        for row in session.execute(
            select(
                ALERTS.c.id,
                ALERTS.c.fingerprint,
                ALERTS.c.status,
                ALERTS.c.incident_id,
                ALERTS.c.alertname,
                ALERTS.c.received_count,
                ALERTS.c.starts_at,
                ALERTS.c.ends_at,
            ).where(ALERTS.c.fingerprint.in_(list(alerts)))
        )
    }
    for row in session.execute(
        select(INCIDENTS.c.id, INCIDENTS.c.severity, INCIDENTS.c.group_key).where(
            INCIDENTS.c.status == "open", INCIDENTS.c.group_key.in_(keys)
        )
    ):
        batch.open_by_key[row.group_key] = open_incident_state(row.id, row.severity)
    batch.resolving = {  # incidents one of whose firing alerts resolves in this webhook
        stored["incident_id"]
        for fp, stored in existing.items()
        if alerts[fp].status == "resolved"
        and stored["status"] == "firing"
        and not is_stale(alerts[fp], stored)
    }
    if batch.resolving:  # the incidents these resolutions may close, in one query
        batch.stored_incidents = {
            row.id: row._asdict()
            for row in session.execute(
                select(*INCIDENT_STATE).where(INCIDENTS.c.id.in_(batch.resolving))
            )
        }
    batch.open_incidents(  # for the new alerts (a resolution overtaking its firing too)
        [
            a
            for fp, a in alerts.items()
            if fp not in existing
            or (
                a.status == "firing"
                and existing[fp]["status"] == "resolved"
                and not is_stale(a, existing[fp])
            )
        ]
    )
    for fingerprint, incoming in alerts.items():
        apply_alert(batch, incoming, existing.get(fingerprint))
    for status in ("firing", "resolved"):
        if count := sum(1 for a in alerts.values() if a.status == status):
            metrics.ALERTS_RECEIVED.labels(status).inc(count)
    if payload.truncated_alerts:  # a group past the receiver's max_alerts: the rest never come
        metrics.ALERTS_TRUNCATED.inc(payload.truncated_alerts)
        log.warning(
            "alerts_truncated", left_out=payload.truncated_alerts, received=len(payload.alerts)
        )
    insert_rows(session, ALERTS, batch.new_alerts)
    update_rows(session, ALERTS, list(batch.changed_alerts.values()))
    resolve_finished_incidents(batch)
    update_rows(
        session,
        INCIDENTS,
        [
            {
                "id": incident_id,
                "severity": row["severity"],
                "status": row["status"],
                "resolved_at": row["resolved_at"],
                "updated_at": now,
            }
            for incident_id, row in sorted(batch.touched.items())
        ],
    )
    audit_service.append(session=session, events=batch.events)
    batch.result.incidents = sorted(batch.touched)
    return batch.result


def get(*, session: Session, incident_id: int) -> tuple[Incident, list[Alert]]:
    incident = session.get(Incident, incident_id) if incident_id <= MAX_INCIDENT_ID else None
    if incident is None:
        raise IncidentNotFound(f"incident {incident_id} not found")
    alerts = list(
        session.scalars(select(Alert).where(Alert.incident_id == incident_id).order_by(Alert.id))
    )
    return incident, alerts


def list_incidents(
    *,
    session: Session,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> tuple[list[Incident], int | None]:
    """Newest first; the cursor continues below the last id."""
    stmt = select(Incident).order_by(Incident.id.desc()).limit(limit + 1)
    if status:
        stmt = stmt.where(Incident.status == status)
    if before_id and before_id <= MAX_INCIDENT_ID:  # a larger cursor is above every id
        stmt = stmt.where(Incident.id < before_id)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
