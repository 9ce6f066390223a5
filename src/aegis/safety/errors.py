"""Safety review exceptions, each with a stable ``code`` (see ``aegis.core.errors``)."""

from __future__ import annotations

from aegis.core.errors import Conflict, NotFound


class FlagNotFound(NotFound):
    code = "safety_flag_not_found"


class FlagAlreadyReviewed(Conflict):
    code = "safety_flag_already_reviewed"
