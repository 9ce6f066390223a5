"""Set-based writes store exactly what the ORM would, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from sqlalchemy import Table, select

from aegis.audit.models import AuditEntry
from aegis.database.bulk import insert_rows, update_rows
from aegis.database.core import Database
from aegis.incidents.models import Alert, Incident

INCIDENTS = cast(Table, Incident.__table__)
ALERTS = cast(Table, Alert.__table__)
AUDIT = cast(Table, AuditEntry.__table__)
NOW = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)


def _incident(key: str, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "group_key": key,
        "status": "open",
        "title": "HighErrorRate",
        "severity": "warning",
        "namespace": "ns",
        "workload": key,
        "prediction": None,
        "prediction_status": "pending",
        "prediction_note": "",
        "created_at": NOW,
        "updated_at": NOW,
    }
    row.update(over)
    return row


def test_inserted_rows_come_back_with_their_ids(database: Database) -> None:
    with database.unit_of_work() as session:
        returned = insert_rows(
            session,
            INCIDENTS,
            [_incident(f"k{i}") for i in range(30)],
            returning=("id", "group_key"),
        )
        assert sorted(r.group_key for r in returned) == sorted(f"k{i}" for i in range(30))
        stored = {i.group_key: i.id for i in session.scalars(select(Incident))}
    assert {r.group_key: r.id for r in returned} == stored


def test_values_round_trip_exactly(database: Database) -> None:
    """Timestamps keep their microseconds and zone, nested JSON stays JSON, and text with
    quotes, backslashes, newlines and non-ASCII characters is stored byte for byte (audit
    entries are hashed as stored)."""
    tricky = "a \"quoted\" \\ back\nslash, é, 日本, \U0001f600, 'single'"
    with database.unit_of_work() as session:
        (incident,) = insert_rows(session, INCIDENTS, [_incident("k")], returning=("id",))
        insert_rows(
            session,
            ALERTS,
            [
                {
                    "fingerprint": "f1",
                    "incident_id": incident.id,
                    "alertname": tricky,
                    "status": "firing",
                    "labels": {"a": tricky, "nested": "x"},
                    "annotations": {},
                    "starts_at": NOW - timedelta(minutes=5),
                    "ends_at": None,
                    "received_count": 1,
                    "last_received_at": NOW,
                }
            ],
        )
    with database.unit_of_work() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.alertname == tricky
        assert alert.labels == {"a": tricky, "nested": "x"}
        assert alert.starts_at is not None and alert.ends_at is None
        assert alert.starts_at.replace(tzinfo=alert.starts_at.tzinfo or UTC) == NOW - timedelta(
            minutes=5
        )


def test_none_in_a_json_column_is_json_null_as_the_orm_stores_it(database: Database) -> None:
    with database.unit_of_work() as session:
        insert_rows(session, INCIDENTS, [_incident("bulk")])
        session.add(Incident(**_incident("orm")))
    with database.engine.connect() as conn:
        rows: dict[str, bool] = dict(
            conn.exec_driver_sql(
                "SELECT group_key, prediction IS NULL FROM incidents ORDER BY group_key"
            ).all()
        )
    assert rows == {"bulk": False, "orm": False}


def test_update_sets_the_given_columns_of_the_matching_rows_only(database: Database) -> None:
    with database.unit_of_work() as session:
        ids = {
            r.group_key: r.id
            for r in insert_rows(
                session, INCIDENTS, [_incident(k) for k in "abc"], returning=("id", "group_key")
            )
        }
        later = NOW + timedelta(hours=1)
        update_rows(
            session,
            INCIDENTS,
            [
                {"id": ids["a"], "status": "resolved", "resolved_at": later},
                {"id": ids["b"], "status": "open", "resolved_at": None},
            ],
        )
    with database.unit_of_work() as session:
        got = {
            i.group_key: (i.status, i.resolved_at is not None)
            for i in session.scalars(select(Incident))
        }
        assert got == {"a": ("resolved", True), "b": ("open", False), "c": ("open", False)}


def test_rows_must_share_their_columns_and_name_real_ones(database: Database) -> None:
    with database.unit_of_work() as session:
        with pytest.raises(ValueError, match="same columns"):
            insert_rows(session, INCIDENTS, [_incident("a"), {**_incident("b"), "extra": 1}])
        with pytest.raises(ValueError, match="no column 'nope'"):
            insert_rows(session, INCIDENTS, [{"nope": 1}])
        with pytest.raises(ValueError, match="key column"):
            update_rows(session, INCIDENTS, [{"status": "open"}])
