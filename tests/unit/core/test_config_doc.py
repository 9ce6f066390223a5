"""docs/configuration.md names every setting Aegis reads."""

from __future__ import annotations

from pathlib import Path

from aegis.core.config import Settings

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
