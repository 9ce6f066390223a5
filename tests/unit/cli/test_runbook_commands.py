"""The operations runbooks (docs/operations/*.md) name commands that exist as written.

Every ``aegis GROUP COMMAND --option`` in their code must be a command and options of the CLI
itself; every repository path they name for a script must exist; every ``aegis.x.y.name`` they
give as the replacement of a runbook's Python entry point must import; every ``curl`` must name
a URL curl accepts (``curl :3000/...`` is HTTPie's shorthand: curl exits 3).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from aegis.cli.main import app

REPO = Path(__file__).resolve().parents[3]
DOCS = sorted((REPO / "docs" / "operations").glob("*.md"))
CODE = re.compile(r"```[a-z]*\n(.*?)```|`([^`\n]+)`", re.DOTALL)
# `aegis` as a command, not the namespace of `kubectl -n aegis`, `docker compose -p aegis` or the
# release name of `helm upgrade --install aegis`.
COMMAND = re.compile(
    r"(?:^|(?<=[\s(=]))(?<!-n )(?<!-p )(?<!--install )(?:\.venv/bin/)?aegis"
    r"((?: [a-z][a-z-]*){1,2})(.*)"
)
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
SCRIPT = re.compile(r"(?<![\w/.-])((?:scripts|infrastructure/scripts)/[\w/.-]+\.(?:py|sh))")
DOTTED = re.compile(r"\baegis(?:\.[a-z_]+)+\.(?:[a-z_]+)\b")


def _code_lines() -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        for match in CODE.finditer(doc.read_text()):
            for line in (match.group(1) or match.group(2)).splitlines():
                yield doc.name, line


def _resolve(words: list[str]) -> Any:
    command: Any = typer.main.get_command(app)
    for word in words:
        if not hasattr(command, "list_commands"):
            break  # a leaf command: the rest are its arguments (aegis serve backend)
        sub = command.get_command(None, word)
        if sub is None:
            return None
        command = sub
    return command


def _aegis_commands() -> list[tuple[str, str, list[str], list[str]]]:
    found = []
    for doc, line in _code_lines():
        for match in COMMAND.finditer(line):
            rest = re.split(r"\s#|\s\|\s|&&|;", match.group(2))[0]
            found.append((doc, line.strip(), match.group(1).split(), OPTION.findall(rest)))
    return found


def test_the_runbooks_name_aegis_commands() -> None:
    assert len(_aegis_commands()) > 40  # the extraction itself still finds them


@pytest.mark.parametrize(
    ("doc", "line", "words", "options"), _aegis_commands(), ids=lambda v: str(v)[:60]
)
def test_every_aegis_command_in_the_runbooks_exists_with_its_options(
    doc: str, line: str, words: list[str], options: list[str]
) -> None:
    command = _resolve(words)
    assert command is not None, f"{doc}: `aegis {' '.join(words)}` is not a command: {line}"
    known = {opt for param in command.params for opt in param.opts}
    unknown = [opt for opt in options if opt not in known | {"--help"}]
    assert not unknown, f"{doc}: `aegis {' '.join(words)}` has no {unknown}: {line}"


def test_every_script_the_runbooks_name_exists() -> None:
    named = {m for doc in DOCS for m in SCRIPT.findall(doc.read_text())}
    assert "scripts/verify_model_signatures.py" in named
    missing = sorted(path for path in named if not (REPO / path).is_file())
    assert not missing, f"named in docs/operations but missing: {missing}"


def test_every_python_replacement_the_runbook_names_imports() -> None:
    text = (REPO / "docs" / "operations" / "runbook.md").read_text()
    names = set(DOTTED.findall(text))
    assert "aegis.registry.loader.fetch_and_prepare_model_for_load" in names
    for dotted in sorted(names):
        module, _, attribute = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), dotted


def test_every_curl_in_the_runbooks_names_a_url_curl_accepts() -> None:
    bad = [
        f"{doc}: {line.strip()}"
        for doc, line in _code_lines()
        if re.search(r"\bcurl\b", line) and re.search(r"(?:^|\s)['\"]?:\d+/", line)
    ]
    assert not bad, "curl needs http://HOST:PORT/ (':PORT/' is HTTPie's shorthand):\n" + "\n".join(
        bad
    )
