"""Turn Alertmanager webhooks into deduplicated alerts grouped into incidents.

* An alert is identified by Alertmanager's ``fingerprint``: the same fingerprint again is a
  duplicate (counted, not stored twice).
* Firing alerts about the same workload — ``namespace`` plus the first of the labels
  ``deployment``, ``statefulset``, ``daemonset``, ``service``, ``job``, ``app``, ``pod`` (else the
  alert name) — join that workload's open incident, or open a new one.
* An incident resolves when every one of its alerts has resolved; a resolved alert that fires
  again joins the workload's open incident (or a new one).
* Every new alert, resolution, opened and resolved incident is an audit event, appended in the
  same transaction as the change.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from aegis.audit import service as audit_service
from aegis.audit.schemas import AuditEventCreate
from aegis.core import metrics
from aegis.incidents.errors import IncidentNotFound
from aegis.incidents.models import Alert, Incident
from aegis.incidents.schemas import IngestResult, WebhookAlert, WebhookPayload

WORKLOAD_LABELS = ("deployment", "statefulset", "daemonset", "service", "job", "app", "pod")
SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1, "none": 0}


def workload_of(labels: dict[str, str]) -> tuple[str, str]:
    namespace = labels.get("namespace", "")
    for key in WORKLOAD_LABELS:
        if labels.get(key):
            return namespace, labels[key]
    return namespace, labels.get("alertname", "unknown")


def group_key(namespace: str, workload: str) -> str:
    return hashlib.sha256(f"{namespace}\x00{workload}".encode()).hexdigest()[:32]


def _severity(labels: dict[str, str]) -> str:
    value = labels.get("severity", "warning").lower()
    return value if value in SEVERITY_RANK else "warning"


class _Batch:
    """The state of one ingest: what exists, what changed, what to audit."""

    def __init__(self, session: Session, actor: str, now: datetime) -> None:
        self.session = session
        self.actor = actor
        self.now = now
        self.events: list[AuditEventCreate] = []
        self.new_rows: list[dict[str, Any]] = []
        self.open_by_key: dict[str, Incident] = {}
        self.touched: dict[int, Incident] = {}
        self.result = IngestResult(
            received=0, new_alerts=0, resolved_alerts=0, duplicates=0, incidents=[]
        )

    def audit(self, event_type: str, resource: str, **data: object) -> None:
        self.events.append(
            AuditEventCreate(
                category="system",
                event_type=event_type,
                actor=self.actor,
                resource=resource,
                data=data,
                created_at=self.now,
            )
        )

    def open_incidents(self, alerts: list[WebhookAlert]) -> None:
        """Open, in one INSERT, an incident for every workload in ``alerts`` without one."""
        created: list[Incident] = []
        for alert in alerts:
            namespace, workload = workload_of(alert.labels)
            key = group_key(namespace, workload)
            if key in self.open_by_key:
                continue
            incident = Incident(
                group_key=key,
                status="open",
                title=alert.labels.get("alertname", "alert"),
                severity=_severity(alert.labels),
                namespace=namespace,
                workload=workload,
                prediction=None,
                prediction_status="pending",
                prediction_note="",
                created_at=self.now,
                updated_at=self.now,
            )
            self.open_by_key[key] = incident
            created.append(incident)
        if not created:
            return
        self.session.add_all(created)
        self.session.flush()  # the ids go into the alert rows and the audit records
        for incident in created:
            self.audit(
                "incident.opened",
                f"incident:{incident.id}",
                incident_id=incident.id,
                namespace=incident.namespace,
                workload=incident.workload,
                title=incident.title,
            )

    def incident_for(self, alert: WebhookAlert) -> Incident:
        incident = self.open_by_key[group_key(*workload_of(alert.labels))]
        if SEVERITY_RANK[_severity(alert.labels)] > SEVERITY_RANK[incident.severity]:
            incident.severity = _severity(alert.labels)
        incident.updated_at = self.now
        self.touched[incident.id] = incident
        return incident


def ingest(
    *, session: Session, payload: WebhookPayload, actor: str = "alertmanager"
) -> IngestResult:
    now = datetime.now(UTC)
    batch = _Batch(session, actor, now)
    # Last occurrence wins when a payload repeats a fingerprint.
    alerts = {a.fingerprint: a for a in payload.alerts}
    batch.result.received = len(payload.alerts)
    batch.result.duplicates = len(payload.alerts) - len(alerts)
    existing = {
        a.fingerprint: a
        for a in session.scalars(select(Alert).where(Alert.fingerprint.in_(list(alerts))))
    }
    keys = {group_key(*workload_of(a.labels)) for a in alerts.values()}
    for incident in session.scalars(
        select(Incident).where(Incident.status == "open", Incident.group_key.in_(keys))
    ):
        batch.open_by_key[incident.group_key] = incident
    batch.open_incidents(
        [
            a
            for fp, a in alerts.items()
            if a.status == "firing" and (fp not in existing or existing[fp].status == "resolved")
        ]
    )
    for fingerprint, incoming in alerts.items():
        _apply(batch, incoming, existing.get(fingerprint))
        metrics.ALERTS_RECEIVED.labels(incoming.status).inc()
    if batch.new_rows:
        session.execute(insert(Alert), batch.new_rows)  # executemany: pipelined by psycopg
    session.flush()
    _resolve_finished_incidents(batch)
    audit_service.append(session=session, events=batch.events)
    batch.result.incidents = sorted(batch.touched)
    return batch.result


def _apply(batch: _Batch, incoming: WebhookAlert, stored: Alert | None) -> None:
    if stored is None:
        if incoming.status == "resolved":
            batch.result.duplicates += 1  # a resolution for an alert we never saw firing
            return
        incident = batch.incident_for(incoming)
        batch.new_rows.append(  # written in one multi-row INSERT after the loop
            {
                "fingerprint": incoming.fingerprint,
                "incident_id": incident.id,
                "alertname": incoming.labels.get("alertname", ""),
                "status": "firing",
                "labels": incoming.labels,
                "annotations": incoming.annotations,
                "starts_at": incoming.starts_at,
                "ends_at": None,
                "received_count": 1,
                "last_received_at": batch.now,
            }
        )
        batch.result.new_alerts += 1
        batch.audit(
            "alert.received",
            f"incident:{incident.id}",
            fingerprint=incoming.fingerprint,
            alertname=incoming.labels.get("alertname", ""),
            incident_id=incident.id,
        )
        return
    stored.received_count += 1
    stored.last_received_at = batch.now
    if incoming.status == stored.status:
        batch.result.duplicates += 1
        return
    if incoming.status == "resolved":
        stored.status = "resolved"
        stored.ends_at = incoming.ends_at or batch.now
        batch.result.resolved_alerts += 1
        batch.touched.setdefault(stored.incident_id, _incident(batch.session, stored.incident_id))
        batch.audit(
            "alert.resolved",
            f"incident:{stored.incident_id}",
            fingerprint=stored.fingerprint,
            incident_id=stored.incident_id,
        )
        return
    # resolved -> firing again: it joins the workload's open incident
    incident = batch.incident_for(incoming)
    stored.status, stored.ends_at, stored.incident_id = "firing", None, incident.id
    batch.result.new_alerts += 1
    batch.audit(
        "alert.received",
        f"incident:{incident.id}",
        fingerprint=stored.fingerprint,
        alertname=stored.alertname,
        incident_id=incident.id,
        refired=True,
    )


def _incident(session: Session, incident_id: int) -> Incident:
    found = session.get(Incident, incident_id)
    if found is None:
        raise IncidentNotFound(f"incident {incident_id} not found")
    return found


def _resolve_finished_incidents(batch: _Batch) -> None:
    ids = [i for i, inc in batch.touched.items() if inc.status == "open"]
    if not ids:
        return
    still_firing = set(
        batch.session.scalars(
            select(Alert.incident_id)
            .where(Alert.incident_id.in_(ids), Alert.status == "firing")
            .group_by(Alert.incident_id)
        )
    )
    for incident_id in ids:
        if incident_id in still_firing:
            continue
        incident = batch.touched[incident_id]
        incident.status, incident.resolved_at = "resolved", batch.now
        batch.audit("incident.resolved", f"incident:{incident_id}", incident_id=incident_id)


def get(*, session: Session, incident_id: int) -> tuple[Incident, list[Alert]]:
    incident = _incident(session, incident_id)
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
    if before_id:
        stmt = stmt.where(Incident.id < before_id)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
