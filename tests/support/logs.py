"""The services' real log output, captured: :func:`json_lines` configures logging as a service
starts (:func:`aegis.core.logging.configure_logging`, JSON lines on stderr) for the length of a
test, and gives back what was written."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog

from aegis.core.logging import configure_logging


@contextmanager
def json_lines(
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[[], tuple[str, list[dict[str, Any]]]]]:
    """Yield a function returning (everything written to stderr since the last call, its JSON
    lines parsed); logging is put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    capsys.readouterr()
    configure_logging(level="INFO", json_output=True, service="test")

    def written() -> tuple[str, list[dict[str, Any]]]:
        err = capsys.readouterr().err
        return err, [json.loads(line) for line in err.splitlines() if line.startswith("{")]

    try:
        yield written
    finally:
        root.handlers[:], root.level = handlers, level
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        logging.getLogger("uvicorn.access").disabled = False
