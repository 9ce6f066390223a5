"""Set-based writes: many rows in one statement, and the one-row upsert.

The ORM's unit of work, and even a pipelined ``executemany``, send one statement per row: on
PostgreSQL each is parsed, bound, executed and answered on its own, and for a webhook of 50
alerts that per-statement work costs more server CPU than the rows themselves. Here the rows
travel as **one JSON parameter** that PostgreSQL expands with ``json_populate_recordset`` into
the table's own row type, so:

* one statement whatever the number of rows, with constant text (prepared once per
  connection by psycopg, planned once);
* values are typed by the table's columns (``timestamptz``, ``json``, ``bigint`` ...), never by
  string building: the SQL text holds only identifiers quoted by the dialect;
* the JSON is built by the standard library's C encoder (datetimes as ISO 8601).

SQLite is in-process (no round trips), so there the same calls are plain ``executemany``.
Callers pass rows that all have the same keys: column names of ``table``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Dialect, Row, Table, bindparam, insert, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from aegis.database.core import is_postgres


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a bulk write")


_ENCODER = json.JSONEncoder(
    default=_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _rows_json(rows: Sequence[dict[str, Any]]) -> str:
    return _ENCODER.encode(rows)


def _columns(table: Table, rows: Sequence[dict[str, Any]]) -> list[str]:
    columns = list(rows[0])
    unknown = [c for c in columns if c not in table.c]
    if unknown:
        raise ValueError(f"{table.name} has no column {unknown[0]!r}")
    if any(row.keys() != rows[0].keys() for row in rows):
        raise ValueError("every row of a bulk write must have the same columns")
    return columns


def _value(table: Table, column: str, dialect: Dialect, quote: Any) -> str:
    """``r.column``, except that ``None`` in a JSON column is JSON ``null`` as SQLAlchemy
    stores it (``none_as_null=False``), not SQL NULL as ``json_populate_recordset`` would."""
    kind = table.c[column].type
    ref = f"r.{quote(column)}"
    if isinstance(kind, JSON) and not kind.none_as_null:
        return f"COALESCE({ref}, CAST('null' AS {kind.compile(dialect=dialect)}))"
    return ref


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """INSERT ``rows`` into ``table``; the ``returning`` columns of the new rows (any order)."""
    if not rows:
        return []
    columns = _columns(table, rows)
    if not is_postgres(session):
        stmt = insert(table)
        if returning:
            many = stmt.returning(*(table.c[c] for c in returning), sort_by_parameter_order=True)
            return list(session.execute(many, list(rows)))
        session.execute(stmt, list(rows))
        return []
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    values = ", ".join(_value(table, c, dialect, quote) for c in columns)
    sql = (
        f"INSERT INTO {quote(table.name)} ({names}) SELECT {values} "  # noqa: S608 (see docstring)
        f"FROM json_populate_recordset(NULL::{quote(table.name)}, CAST(:rows AS json)) AS r"
    )
    if returning:
        sql += " RETURNING " + ", ".join(quote(c) for c in returning)
    result = session.execute(text(sql), {"rows": _rows_json(rows)})
    return list(result) if returning else []


def update_rows(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], *, key: str = "id"
) -> None:
    """UPDATE the rows of ``table`` whose ``key`` matches, setting every other given column."""
    if not rows:
        return
    columns = _columns(table, rows)
    if key not in columns:
        raise ValueError(f"bulk update rows must carry the key column {key!r}")
    values = [c for c in columns if c != key]
    if not values:
        return
    if not is_postgres(session):
        stmt = (
            update(table)
            .where(table.c[key] == bindparam("_key"))
            .values({c: bindparam(c) for c in values})
        )
        params = [{**{c: row[c] for c in values}, "_key": row[key]} for row in rows]
        session.connection().execute(stmt, params)
        return
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    target = quote(table.name)
    assignments = ", ".join(f"{quote(c)} = {_value(table, c, dialect, quote)}" for c in values)
    sql = (
        f"UPDATE {target} SET {assignments} "  # noqa: S608 (see docstring)
        f"FROM json_populate_recordset(NULL::{target}, CAST(:rows AS json)) AS r "
        f"WHERE {target}.{quote(key)} = r.{quote(key)}"
    )
    session.execute(text(sql), {"rows": _rows_json(rows)})


def upsert(
    session: Session,
    model: type[Any],
    values: dict[str, Any],
    *,
    keys: Sequence[str],
    update_with: dict[str, Any],
) -> None:
    """Insert one row, or on a conflict on ``keys`` apply ``update_with`` to the row there: one
    statement (``INSERT ... ON CONFLICT DO UPDATE`` on both databases), so writers racing on a
    new key neither collide nor lose an update. ``update_with`` values may be SQL expressions
    (``Model.count + 1``)."""
    make = postgresql_insert if is_postgres(session) else sqlite_insert
    statement = make(model).values(**values)
    columns = [getattr(model, key) for key in keys]
    session.execute(statement.on_conflict_do_update(index_elements=columns, set_=update_with))
    # instances of the model already in the session may now be stale: they reload on access
    for instance in list(session.identity_map.values()):
        if isinstance(instance, model):
            session.expire(instance)
