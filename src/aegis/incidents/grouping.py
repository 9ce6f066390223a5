"""How one webhook's alerts change the stored alerts and incidents.

* An alert is identified by Alertmanager's ``fingerprint``: the same fingerprint again is a
  duplicate (counted, not stored twice).
* Firing alerts about the same workload — ``namespace`` plus the first of the labels
  ``deployment``, ``statefulset``, ``daemonset``, ``service``, ``job``, ``app``, ``pod`` (else the
  alert name) — join that workload's open incident, or open a new one.
* An incident resolves when every one of its alerts has resolved; a resolved alert that fires
  again (a later ``startsAt``) joins the workload's open incident (or a new one): a resolved
  incident is never reopened. A notification older than what is stored — a firing that started
  before the stored resolution's ``endsAt``, a resolution that ended before the stored
  ``startsAt`` — is a late copy (an Alertmanager peer's retry): counted as a duplicate, it
  neither reopens nor resolves anything.
* A resolution for an alert never seen (it overtook its firing across retries, or the firing
  never arrived) is stored as a resolved alert in the workload's open incident, or in a new one
  that resolves at once: the firing that may follow is then a late copy, instead of opening an
  incident no notification would ever resolve.
* Every new alert, resolution, opened and resolved incident is an audit event (:class:`Batch`
  collects them; :func:`aegis.incidents.service.ingest` appends them with the change).
* Label values are stored whole in the alert's labels; the incident's title, namespace and
  workload and the alert's name are cut to their columns' widths (512, 256, 256, 256
  characters), so one long label never refuses a webhook (on PostgreSQL it did, alerts and all).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import String, Table, select
from sqlalchemy.orm import Session

from aegis.audit.schemas import AuditEventCreate
from aegis.database.bulk import insert_rows
from aegis.incidents.errors import IncidentNotFound
from aegis.incidents.models import Alert, Incident
from aegis.incidents.schemas import IngestResult, WebhookAlert

WORKLOAD_LABELS = ("deployment", "statefulset", "daemonset", "service", "job", "app", "pod")
SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1, "none": 0}
ALERTS = cast(Table, Alert.__table__)
INCIDENTS = cast(Table, Incident.__table__)
# What ingest tracks of an incident: the columns it may change, and the id.
INCIDENT_STATE = (INCIDENTS.c.id, INCIDENTS.c.severity, INCIDENTS.c.status, INCIDENTS.c.resolved_at)


def workload_of(labels: dict[str, str]) -> tuple[str, str]:
    namespace = labels.get("namespace", "")
    for key in WORKLOAD_LABELS:
        if labels.get(key):
            return namespace, labels[key]
    return namespace, labels.get("alertname", "unknown")


def group_key(namespace: str, workload: str) -> str:
    return hashlib.sha256(f"{namespace}\x00{workload}".encode()).hexdigest()[:32]


def placement(labels: dict[str, str]) -> tuple[str, str, str]:
    namespace, workload = workload_of(labels)
    return namespace, workload, group_key(namespace, workload)


def _clipped(column: str, value: str, table: Table = INCIDENTS) -> str:
    """``value`` cut to the width of ``table``'s ``column``: PostgreSQL refuses a longer one
    (and with it the whole webhook), SQLite keeps it. The alert's labels keep the whole value."""
    return value[: cast(String, table.c[column].type).length]


def open_incident_state(incident_id: int, severity: str) -> dict[str, Any]:
    return {"id": incident_id, "severity": severity, "status": "open", "resolved_at": None}


def _severity(labels: dict[str, str]) -> str:
    value = labels.get("severity", "warning").lower()
    return value if value in SEVERITY_RANK else "warning"


class Batch:
    """The state of one ingest: what exists, what changed, what to audit."""

    def __init__(
        self,
        session: Session,
        actor: str,
        now: datetime,
        placed: dict[str, tuple[str, str, str]],
    ) -> None:
        self.session = session
        self.placed = placed  # fingerprint -> namespace, workload, group key
        self.actor = actor
        self.now = now
        self.events: list[AuditEventCreate] = []
        self.new_alerts: list[dict[str, Any]] = []
        self.changed_alerts: dict[int, dict[str, Any]] = {}
        # Incident rows (the INCIDENT_STATE columns), updated in place.
        self.open_by_key: dict[str, dict[str, Any]] = {}  # group key -> its open incident
        self.stored_incidents: dict[int, dict[str, Any]] = {}  # of the stored alerts
        self.touched: dict[int, dict[str, Any]] = {}  # incident id -> its row as updated
        self.resolving: set[int] = set()  # incidents one of whose alerts resolves here
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
        created: dict[str, dict[str, Any]] = {}
        for alert in alerts:
            namespace, workload, key = self.placed[alert.fingerprint]
            if key in self.open_by_key or key in created:
                continue
            created[key] = {
                "group_key": key,
                "status": "open",
                "title": _clipped("title", alert.labels.get("alertname", "alert")),
                "severity": _severity(alert.labels),
                "namespace": _clipped("namespace", namespace),
                "workload": _clipped("workload", workload),
                "prediction": None,
                "prediction_status": "pending",
                "prediction_note": "",
                "created_at": self.now,
                "updated_at": self.now,
            }
        rows = list(created.values())
        ids = {
            r.group_key: int(r.id)
            for r in insert_rows(self.session, INCIDENTS, rows, returning=("id", "group_key"))
        }
        for key, row in created.items():
            self.open_by_key[key] = open_incident_state(ids[key], row["severity"])
            self.audit(
                "incident.opened",
                f"incident:{ids[key]}",
                incident_id=ids[key],
                namespace=row["namespace"],
                workload=row["workload"],
                title=row["title"],
            )

    def incident_for(self, alert: WebhookAlert) -> int:
        """The open incident ``alert`` joins (raising its severity if the alert's is higher)."""
        incident = self.open_by_key[self.placed[alert.fingerprint][2]]
        severity = _severity(alert.labels)
        if SEVERITY_RANK[severity] > SEVERITY_RANK[incident["severity"]]:
            incident["severity"] = severity
        self.touched[incident["id"]] = incident
        return int(incident["id"])


def apply_alert(batch: Batch, incoming: WebhookAlert, stored: dict[str, Any] | None) -> None:
    if stored is None:
        _add(batch, incoming)
        return
    change = {  # every changed alert row carries the same columns: one UPDATE for them all
        "id": stored["id"],
        "received_count": stored["received_count"] + 1,
        "last_received_at": batch.now,
        "status": stored["status"],
        "starts_at": stored["starts_at"],
        "ends_at": stored["ends_at"],
        "incident_id": stored["incident_id"],
    }
    batch.changed_alerts[stored["id"]] = change
    if incoming.status == stored["status"] or is_stale(incoming, stored):
        batch.result.duplicates += 1
        return
    if incoming.status == "resolved":
        change["status"], change["ends_at"] = "resolved", incoming.ends_at or batch.now
        batch.result.resolved_alerts += 1
        incident = batch.stored_incidents.get(stored["incident_id"])
        if incident is None:
            raise IncidentNotFound(f"incident {stored['incident_id']} not found")
        batch.touched.setdefault(incident["id"], incident)
        batch.audit(
            "alert.resolved",
            f"incident:{stored['incident_id']}",
            fingerprint=stored["fingerprint"],
            incident_id=stored["incident_id"],
        )
        return
    # resolved -> firing again: it joins the workload's open incident
    incident_id = batch.incident_for(incoming)
    change.update(
        status="firing", starts_at=incoming.starts_at, ends_at=None, incident_id=incident_id
    )
    batch.result.new_alerts += 1
    batch.audit(
        "alert.received",
        f"incident:{incident_id}",
        fingerprint=stored["fingerprint"],
        alertname=stored["alertname"],
        incident_id=incident_id,
        refired=True,
    )


def _add(batch: Batch, incoming: WebhookAlert) -> None:
    """Store an alert seen for the first time in the workload's open incident. A resolution
    seen first (it overtook its firing, or the firing never came) is stored resolved, so the
    firing that may follow is known as a late copy; its incident resolves with this webhook
    unless another of its alerts fires."""
    incident_id = batch.incident_for(incoming)
    resolved = incoming.status == "resolved"
    batch.new_alerts.append(  # written in one INSERT after the loop
        {
            "fingerprint": incoming.fingerprint,
            "incident_id": incident_id,
            "alertname": _clipped("alertname", incoming.labels.get("alertname", ""), ALERTS),
            "status": incoming.status,
            "labels": incoming.labels,
            "annotations": incoming.annotations,
            "starts_at": incoming.starts_at,
            "ends_at": (incoming.ends_at or batch.now) if resolved else None,
            "received_count": 1,
            "last_received_at": batch.now,
        }
    )
    batch.result.new_alerts += 1
    batch.audit(
        "alert.received",
        f"incident:{incident_id}",
        fingerprint=incoming.fingerprint,
        alertname=incoming.labels.get("alertname", ""),
        incident_id=incident_id,
    )
    if resolved:
        batch.result.resolved_alerts += 1
        batch.resolving.add(incident_id)
        batch.audit(
            "alert.resolved",
            f"incident:{incident_id}",
            fingerprint=incoming.fingerprint,
            incident_id=incident_id,
        )


def _known_time(value: datetime | None) -> datetime | None:
    """``value`` in UTC (SQLite gives naive UTC back); None for Go's zero time, which
    Alertmanager sends for a time it does not know."""
    if value is None or value.year == 1:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def is_stale(incoming: WebhookAlert, stored: dict[str, Any]) -> bool:
    """Whether ``incoming`` is a late copy of a notification the stored state has moved past
    (an Alertmanager peer's retry delivered after the other peer's newer notification): a
    firing that started before the alert's stored resolution ended it, or a resolution that
    ended before the alert fired again."""
    if incoming.status == "firing" and stored["status"] == "resolved":
        mark, since = _known_time(incoming.starts_at), _known_time(stored["ends_at"])
    elif incoming.status == "resolved" and stored["status"] == "firing":
        mark, since = _known_time(incoming.ends_at), _known_time(stored["starts_at"])
    else:
        return False
    return mark is not None and since is not None and mark < since


def resolve_finished_incidents(batch: Batch) -> None:
    """Resolve the open incidents left with no firing alert. Only an incident one of whose
    alerts resolved in this webhook can be one: an open incident always has a firing alert."""
    ids = sorted(i for i in batch.resolving if batch.touched[i]["status"] == "open")
    if not ids:
        return
    still_firing = set(
        batch.session.scalars(
            select(ALERTS.c.incident_id)
            .where(ALERTS.c.incident_id.in_(ids), ALERTS.c.status == "firing")
            .group_by(ALERTS.c.incident_id)
        )
    )
    for incident_id in ids:
        if incident_id in still_firing:
            continue
        incident = batch.touched[incident_id]
        incident["status"], incident["resolved_at"] = "resolved", batch.now
        batch.audit("incident.resolved", f"incident:{incident_id}", incident_id=incident_id)
