"""Request bodies that keep to a JSON schema's shape but carry hostile values: what gets past
validation to a service, its database and its scoring."""

from __future__ import annotations

from typing import Any


def hostile(
    schema: dict[str, Any],
    defs: dict[str, Any],
    *,
    text: str,
    number: int,
    real: float = 1e308,
    option: int = 0,
) -> Any:
    """An instance of ``schema`` with every string ``text``, every integer ``number`` and every
    other number ``real``; of a union, the ``option``-th choice that is not null."""

    def build(node: dict[str, Any]) -> Any:
        return hostile(node, defs, text=text, number=number, real=real, option=option)

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
        return "2026-01-01T00:00:00Z" if schema.get("format") == "date-time" else text
    if kind == "integer":
        return number
    if kind == "number":
        return real
    if kind == "boolean":
        return True
    return text
