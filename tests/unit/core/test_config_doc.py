"""docs/configuration.md names every setting Aegis reads, with its default."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import TypeAdapter
from pydantic_core import PydanticUndefined

from aegis.core.config import Settings, env_name

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = []
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        env = alias.choices[0] if alias is not None else None  # type: ignore[union-attr]
        if f"`{env}`" not in text:
            missing.append(env)
    assert missing == []


def _documented_defaults() -> dict[str, str]:
    """Each variable's default cell, one per variable of a ``A / B`` row."""
    defaults: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        names, default = (cell.strip() for cell in line.strip("|").split("|")[:2])
        variables = [re.findall(r"`(\w+)`", part)[0] for part in names.split(" / ")]
        values = default.split(" / ") if len(variables) > 1 else [default]
        assert len(values) == len(variables), f"one default per variable: {line}"
        defaults |= {name: value.strip() for name, value in zip(variables, values, strict=True)}
    return defaults


def test_every_documented_default_is_the_settings_default() -> None:
    documented = _documented_defaults()
    wrong = []
    for name, field in Settings.model_fields.items():
        if field.default in (None, "", PydanticUndefined):
            continue  # unset, empty or derived: the doc says in words what takes its place
        env, kind = env_name(name), field.annotation
        assert kind is not None, name
        shown = re.fullmatch(r"`([^`]+)`(?: \(.*\))?", documented[env])
        value = TypeAdapter[object](kind).validate_python(shown[1]) if shown else None
        if value != field.default:
            wrong.append(f"{env}: documented {documented[env]}, default {field.default!r}")
    assert wrong == []
