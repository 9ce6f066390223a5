"""Errors of the NAB evaluation."""

from __future__ import annotations

from aegis.core.errors import AegisError


class NabError(AegisError):
    """A NAB data, labels or results file cannot be used."""

    code = "nab_error"
    status_code = 400
