"""Policy documents from YAML or JSON text (or an already-parsed mapping), with precise errors.

YAML is read with YAML 1.2 core-schema scalars: a plain scalar is null, a boolean
(``true``/``false``), a decimal integer, a float, or else a string. So ``17:00`` stays the string
``"17:00"`` (PyYAML's YAML 1.1 would make it the integer 1020) and ``on``/``yes`` stay strings.
Refused outright: duplicate keys (the last would silently win), anchors and aliases, explicit
tags, non-string keys and documents over :data:`MAX_DOCUMENT_BYTES`. JSON is parsed by
:mod:`json` with duplicate keys and ``NaN``/``Infinity`` refused.

Validation errors name the bad field by its dotted path (``conditions.replicas.min: must be
>= 0``), with the YAML line when known; every problem in a document is reported at once.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from aegis.policy.document import Policy
from aegis.policy.errors import FieldError, PolicyInvalid, PolicyParseError

MAX_DOCUMENT_BYTES = 1 << 20
Format = Literal["auto", "yaml", "json"]
Loc = tuple[str | int, ...]

_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False}
_BOOL["FALSE"] = False
_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_TOO_LONG = "an integer with too many digits"
# The tags the loader gives nodes written without one. Private, so that a node written with a
# standard tag (``!!str 5``, which the scalar rules below would read as the integer 5) is told
# apart and refused like any other explicit tag.
_STR_TAG = "tag:aegis,2026:plain-scalar"
_DEFAULT_TAGS = {_STR_TAG, "tag:aegis,2026:plain-seq", "tag:aegis,2026:plain-map"}
_PLAIN_TAGS = {
    yaml.ScalarNode: _STR_TAG,
    yaml.SequenceNode: "tag:aegis,2026:plain-seq",
    yaml.MappingNode: "tag:aegis,2026:plain-map",
}


def parse_policy(
    document: str | bytes | Mapping[str, Any],
    *,
    source: str = "<policy>",
    format: Format = "auto",
) -> Policy:
    """One policy from YAML/JSON text or a mapping; raises :class:`PolicyParseError` or
    :class:`PolicyInvalid` (with every bad field's path)."""
    if isinstance(document, Mapping):
        return _validate(document, source=source, lines={}, prefix=())
    documents = _load(document, source=source, format=format)
    if len(documents) != 1:
        raise PolicyParseError(
            f"expected one policy document, found {len(documents)}", source=source
        )
    data, lines = documents[0]
    return _validate(data, source=source, lines=lines, prefix=())


def parse_policies(
    document: str | bytes | Sequence[Mapping[str, Any]],
    *,
    source: str = "<policies>",
    format: Format = "auto",
) -> list[Policy]:
    """Several policies: a YAML stream (``---``-separated) of documents, each a policy or a
    list of policies, or a JSON object or array. Paths are prefixed with the policy's index."""
    if isinstance(document, str | bytes):
        items: list[tuple[Any, dict[Loc, int]]] = []
        for data, lines in _load(document, source=source, format=format):
            if isinstance(data, list):
                items.extend((d, _shift(lines, (i,))) for i, d in enumerate(data))
            else:
                items.append((data, lines))
    else:
        items = [(d, {}) for d in document]
    policies: list[Policy] = []
    errors: list[FieldError] = []
    for index, (data, lines) in enumerate(items):
        try:
            policies.append(_validate(data, source=source, lines=lines, prefix=(index,)))
        except PolicyInvalid as exc:
            errors.extend(exc.errors)
    if errors:
        raise PolicyInvalid(errors, source=source)
    return policies


def _shift(lines: dict[Loc, int], prefix: Loc) -> dict[Loc, int]:
    """Line map of a list item, re-rooted at the item."""
    size = len(prefix)
    return {path[size:]: line for path, line in lines.items() if path[:size] == prefix}


def _validate(data: Any, *, source: str, lines: dict[Loc, int], prefix: Loc) -> Policy:
    if not isinstance(data, Mapping):
        where = format_path(prefix)
        message = "a policy must be a mapping of fields"
        raise PolicyInvalid([FieldError(where, message, lines.get(()))], source=source)
    try:
        return Policy.model_validate(dict(data))
    except ValidationError as exc:
        raise PolicyInvalid(field_errors(exc, lines=lines, prefix=prefix), source=source) from None


# --- pydantic errors -> FieldError ------------------------------------------------------------
_TYPE_WORDS = {
    "string_type": "must be a string",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "missing": "is required",
    "finite_number": "must be a finite number",
    "timezone_aware": "must carry a time zone",
    "datetime_type": "must be an ISO 8601 timestamp",
    "datetime_parsing": "must be an ISO 8601 timestamp",
    "datetime_from_date_parsing": "must be an ISO 8601 timestamp",
}
_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


def format_path(loc: Sequence[str | int]) -> str:
    """``("conditions", "time_windows", 0, "start")`` -> ``conditions.time_windows[0].start``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _message(error: Mapping[str, Any]) -> str:  # noqa: PLR0911 - one return per error kind
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    if kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        return f"must be {symbol} {ctx[key]}"
    if kind in ("literal_error", "enum"):
        return f"must be one of {ctx['expected']}"
    if kind in ("too_short", "string_too_short"):
        minimum = ctx.get("min_length", 1)
        noun = "character" if kind.startswith("string") else "item"
        return f"must have at least {minimum} {noun}{'s' if minimum != 1 else ''}"
    if kind in ("too_long", "string_too_long"):
        noun = "characters" if kind.startswith("string") else "items"
        return f"must have at most {ctx['max_length']} {noun}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"])


def _known_fields(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """Field names of the model at ``loc`` (for 'did you mean')."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (
            isinstance(current, type) and issubclass(current, BaseModel)
        ):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def field_errors(
    exc: ValidationError,
    *,
    lines: Mapping[Loc, int] | None = None,
    prefix: Loc = (),
    model: type[BaseModel] = Policy,
) -> list[FieldError]:
    """Translate a pydantic error into :class:`FieldError` s: dotted path, short message,
    line of the nearest located ancestor."""
    lines = lines or {}
    out: list[FieldError] = []
    for error in exc.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(error["loc"])
        message = _message(error)
        if error["type"] == "extra_forbidden":
            message = "unknown field"
            known = _known_fields(model, loc[:-1])
            guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
            if guess:
                message += f" (did you mean {guess[0]!r}?)"
        line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
        out.append(FieldError(format_path(prefix + loc), message, line))
    return out


# --- text -> data -----------------------------------------------------------------------------
def _load(text: str | bytes, *, source: str, format: Format) -> list[tuple[Any, dict[Loc, int]]]:
    if isinstance(text, bytes):
        if len(text) > MAX_DOCUMENT_BYTES:
            raise PolicyParseError(f"larger than {MAX_DOCUMENT_BYTES} bytes", source=source)
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PolicyParseError(f"not UTF-8 ({exc.reason})", source=source) from None
    if len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise PolicyParseError(f"larger than {MAX_DOCUMENT_BYTES} bytes", source=source)
    if format == "auto":
        lowered = source.lower()
        if lowered.endswith(".json"):
            format = "json"
        elif lowered.endswith((".yaml", ".yml")):
            format = "yaml"
        else:
            format = "json" if text.lstrip().startswith(("{", "[")) else "yaml"
    if format == "json":
        return [(_json(text, source=source), {})]
    return _yaml(text, source=source)


def _json(text: str, *, source: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise PolicyParseError(f"duplicate key {key!r}", source=source)
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise PolicyParseError(f"{name} is not allowed", source=source)

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise PolicyParseError(
            f"invalid JSON: {exc.msg} (column {exc.colno})", source=source, line=exc.lineno
        ) from None
    except RecursionError:
        raise PolicyParseError("nested too deeply", source=source) from None
    except ValueError:  # an integer past Python's digit limit for int(str) (4,300)
        raise PolicyParseError(f"invalid JSON: {_TOO_LONG}", source=source) from None


class _Loader(yaml.SafeLoader):
    """Composes nodes only; no implicit tag resolution (scalars are resolved by Aegis)."""

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        return _PLAIN_TAGS[kind]  # only nodes written without a tag come here


def _yaml(text: str, *, source: str) -> list[tuple[Any, dict[Loc, int]]]:
    try:
        loader = _Loader(text)  # refuses a control character (NUL, ESC ...) in the text
    except yaml.reader.ReaderError as exc:
        at = text.count("\n", 0, exc.position) + 1
        problem = f"character #x{exc.character:04x} is not allowed"
        raise PolicyParseError(f"invalid YAML: {problem}", source=source, line=at) from None
    documents: list[tuple[Any, dict[Loc, int]]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            lines: dict[Loc, int] = {}
            documents.append((_build(node, (), lines, set(), source), lines))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise PolicyParseError(f"invalid YAML: {problem}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise PolicyParseError(f"invalid YAML: {exc}", source=source) from None
    except RecursionError:
        raise PolicyParseError("nested too deeply", source=source) from None
    finally:
        loader.dispose()
    if not documents:
        raise PolicyParseError("empty document", source=source)
    return documents


def _build(node: yaml.Node, path: Loc, lines: dict[Loc, int], seen: set[int], source: str) -> Any:
    line = node.start_mark.line + 1
    if id(node) in seen:
        raise PolicyParseError("anchors and aliases are not allowed", source=source, line=line)
    seen.add(id(node))
    lines[path] = line
    if node.tag not in _DEFAULT_TAGS:
        raise PolicyParseError(f"explicit tag {node.tag} is not allowed", source=source, line=line)
    if isinstance(node, yaml.ScalarNode):
        try:
            return _scalar(node)
        except ValueError:  # an integer past Python's digit limit for int(str) (4,300)
            raise PolicyParseError(f"invalid YAML: {_TOO_LONG}", source=source, line=line) from None
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), lines, seen, source) for i, item in enumerate(node.value)]
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
            raise PolicyParseError("keys must be plain strings", source=source, line=key_line)
        key = key_node.value
        if key in out:
            raise PolicyParseError(f"duplicate key {key!r}", source=source, line=key_line)
        out[key] = _build(value_node, (*path, key), lines, seen, source)
    return out


def _scalar(node: yaml.ScalarNode) -> Any:
    value: str = node.value
    if node.style is not None:  # quoted, literal or folded: always a string
        return value
    if _NULL.match(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT.match(value):
        return int(value)
    if _FLOAT.match(value):
        return float(value)
    return value
