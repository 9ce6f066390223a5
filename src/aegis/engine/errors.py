"""The AI engine's exceptions, each with a stable ``code`` (see ``aegis.core.errors``)."""

from __future__ import annotations

from aegis.core.errors import AegisError, ServiceUnavailable, Unauthorized


class EngineError(AegisError):
    """The root of the engine's expected failures."""

    code = "engine_error"
    status_code = 400


class InvalidApiKey(Unauthorized):
    """``X-API-Key`` is missing or matches neither the current nor the previous key."""

    code = "invalid_api_key"


class ModelNotLoaded(ServiceUnavailable):
    """No model is being served (none loaded yet, or the only one failed verification)."""

    code = "model_not_loaded"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": "5"}


class QueueFull(ServiceUnavailable):
    """The batch queue is at ``BATCH_QUEUE_LIMIT``: back-pressure, try again shortly."""

    code = "queue_full"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class EngineShuttingDown(ServiceUnavailable):
    code = "engine_shutting_down"

    def __init__(self, message: str = "the engine is shutting down") -> None:
        super().__init__(message)
        self.headers = {"Retry-After": "1"}


class ClientGone(EngineError):
    """The caller closed its connection before its answer was ready: its incidents are taken
    out of the batch queue unscored. Nobody reads the answer; the status (nginx's 499, *client
    closed request*) is what the metrics count."""

    code = "client_closed_request"
    status_code = 499

    def __init__(self, message: str = "the client closed the connection") -> None:
        super().__init__(message)


class ScoringFailed(EngineError):
    """Scoring one incident raised an unexpected error; the other items of its batch are fine."""

    code = "scoring_failed"
    status_code = 500


class ModelFormatError(EngineError):
    """A model directory is not a valid engine model (the message says which file and why)."""

    code = "model_format_error"
