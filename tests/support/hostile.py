"""Hostile values for requests: bodies that keep to a JSON schema's shape but carry hostile
values (:func:`hostile`), and one hostile value put in one field of a valid body
(:data:`HOSTILE_VALUES`, :func:`leaves`, :func:`replaced`): what gets past validation to a
service, its database, its scoring and the cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

HOSTILE_VALUES: list[Any] = [
    "nul\x00byte",
    "x" * 70_000,
    "",
    "\u202e\ufffd",
    2**70,
    -(2**70),
    1e308,
    -1e308,
    5e-324,
    None,
    True,
    [],
    {},
    "9999-12-31T23:59:59-23:59",  # a time beyond year 9999 once in UTC
    "0001-01-01T00:00:00+23:59",  # and one before year 1
]


def leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every leaf (the first item of a list stands for the others)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif isinstance(node, list) and node:
        yield from leaves(node[0], (*path, 0))
    else:
        yield path


def replaced(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``node`` with the leaf at ``path`` set to ``value``."""
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = replaced(node[path[0]], path[1:], value)
    return copy


def hostile(
    schema: dict[str, Any],
    defs: dict[str, Any],
    *,
    text: str,
    number: int,
    real: float = 1e308,
    when: str = "2026-01-01T00:00:00Z",
    option: int = 0,
) -> Any:
    """An instance of ``schema`` with every string ``text``, every date-time ``when``, every
    integer ``number`` and every other number ``real``; of a union, the ``option``-th choice
    that is not null."""

    def build(node: dict[str, Any]) -> Any:
        return hostile(node, defs, text=text, number=number, real=real, when=when, option=option)

    if "$ref" in schema:
        return build(defs[schema["$ref"].rsplit("/", 1)[1]])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return build(options[option % len(options)])
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        return {name: build(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [build(schema.get("items", {}))]
    if kind == "string":
        return when if schema.get("format") == "date-time" else text
    if kind == "integer":
        return number
    if kind == "number":
        return real
    if kind == "boolean":
        return True
    return text
