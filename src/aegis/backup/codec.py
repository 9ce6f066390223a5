"""Rows as JSON that SQLite and PostgreSQL both read back to the same values.

Each column has a *kind*, from its SQLAlchemy type in ``aegis.database.models.metadata``:

==========  =====================================================================
kind        JSON form
==========  =====================================================================
``json``    the stored JSON *text* (a string), so SQL NULL (``null``) and a JSON
            ``null`` value (``"null"``) stay different
``datetime``ISO 8601 in UTC with microseconds (SQLite's naive values are UTC)
``date``    ISO 8601 date
``bool``    ``true`` / ``false`` (SQLite's 0/1 become booleans)
``int``     integer
``float``   number (``NaN``/``Infinity`` as Python's JSON writes them)
``decimal`` decimal string
``bytes``   base64
``str``     string
==========  =====================================================================

A column of any other type is refused when the backup is made (fail closed: a backup must not
silently mangle a value); ``tests/unit/backup`` checks every column Aegis declares has a kind.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Column, ColumnElement, Table

from aegis.backup.errors import BackupCorrupt, BackupError

KINDS = ("json", "datetime", "date", "bool", "int", "float", "decimal", "bytes", "str")
_ORDERED: tuple[tuple[type[sa.types.TypeEngine[Any]], str], ...] = (
    (sa.JSON, "json"),
    (sa.DateTime, "datetime"),
    (sa.Date, "date"),
    (sa.Boolean, "bool"),
    (sa.Integer, "int"),  # BigInteger, SmallInteger
    (sa.Float, "float"),  # before Numeric: Float is a Numeric
    (sa.Numeric, "decimal"),
    (sa.LargeBinary, "bytes"),
    (sa.String, "str"),  # Text, Unicode, Enum
)


def column_kind(column: Column[Any]) -> str:
    for type_, kind in _ORDERED:
        if isinstance(column.type, type_):
            return kind
    raise BackupError(
        f"column {column.table.name}.{column.name} has type {column.type!r}, which the backup "
        "format does not handle; add it to aegis.backup.codec"
    )


def select_columns(table: Table) -> list[ColumnElement[Any]]:
    """What to SELECT for ``table``: JSON columns as their stored text, the rest as they are."""
    return [
        sa.cast(col, sa.Text).label(col.name) if column_kind(col) == "json" else col
        for col in table.columns
    ]


def bind_type(column: Column[Any]) -> sa.types.TypeEngine[Any]:
    """The type to bind a restored value with (JSON: Python ``None`` means SQL NULL)."""
    if column_kind(column) == "json":
        return sa.JSON(none_as_null=True)
    return column.type


def _utc(value: datetime) -> datetime:
    # Aegis stores only UTC; SQLite hands back naive datetimes.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def encode(kind: str, value: Any) -> Any:  # noqa: PLR0911 - one return per kind
    """A database value as JSON."""
    if value is None:
        return None
    if kind == "datetime":
        return _utc(value).isoformat(timespec="microseconds")
    if kind == "date":
        return value.isoformat()
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "decimal":
        return str(value)
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)  # str, and json (already its text)


class Malformed(ValueError):
    """A value does not have its column kind's JSON form (says what was expected)."""


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Malformed(f"expected {what}")
    return value


def _json(value: Any) -> Any:
    parsed = json.loads(_str(value, "JSON text"))
    return sa.JSON.NULL if parsed is None else parsed


def _datetime(value: Any) -> datetime:
    parsed = datetime.fromisoformat(_str(value, "an ISO 8601 timestamp"))
    if parsed.tzinfo is None:
        raise Malformed("expected a timestamp with a UTC offset")
    return parsed.astimezone(UTC)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Malformed("expected true or false")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Malformed("expected an integer")
    return value


def _float(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Malformed("expected a number")
    return float(value)


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "json": _json,
    "datetime": _datetime,
    "date": lambda v: date.fromisoformat(_str(v, "an ISO 8601 date")),
    "bool": _bool,
    "int": _int,
    "float": _float,
    "decimal": lambda v: Decimal(_str(v, "a decimal string")),
    "bytes": lambda v: base64.b64decode(_str(v, "base64"), validate=True),
    "str": lambda v: _str(v, "a string"),
}


def decoder(kind: str) -> Callable[[Any], Any]:
    """The function turning a JSON value of ``kind`` (not None) back into what the column is
    bound with; it raises :class:`Malformed` (a ValueError) for a value of the wrong shape."""
    return _DECODERS[kind]


def decode(kind: str, value: Any, where: str) -> Any:
    """One value (None stays None); ``where`` names it in the BackupCorrupt it raises."""
    if value is None:
        return None
    try:
        return decoder(kind)(value)
    except Malformed as exc:
        raise BackupCorrupt(f"{where}: {exc}") from None
    except (ValueError, InvalidOperation, binascii.Error):
        raise BackupCorrupt(f"{where}: malformed {kind} value") from None
