"""The root of every domain's exceptions.

Services raise subclasses of :class:`AegisError`; one handler (``aegis.core.http``) maps them to
the documented error body ``{"error": {"code", "message", "request_id"}}``. The CLI prints the
message as one line and exits non-zero.
"""

from __future__ import annotations


class AegisError(Exception):
    """An expected failure with a stable machine-readable code and an HTTP status."""

    code: str = "aegis_error"
    status_code: int = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(AegisError):
    """A setting is missing, malformed or unusable; raised at start-up."""

    code = "config_error"
    status_code = 500


class NotFound(AegisError):
    code = "not_found"
    status_code = 404


class Conflict(AegisError):
    code = "conflict"
    status_code = 409


class Unauthorized(AegisError):
    code = "unauthorized"
    status_code = 401


class Forbidden(AegisError):
    code = "forbidden"
    status_code = 403


class ServiceUnavailable(AegisError):
    code = "service_unavailable"
    status_code = 503
