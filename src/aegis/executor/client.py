"""The executor's client: how the backend asks for an action (and reads a workload's logs)::

    client = ExecutorClient.from_settings(settings)  # EXECUTOR_URL + EXECUTOR_HMAC_SECRET
    result = client.submit(ExecutorActionRequest(...))  # ExecutorActionResult
    lines = client.logs(ExecutorLogsRequest(...))  # ExecutorLogsResult (read only)

``submit`` signs every request with a fresh timestamp and nonce and forwards the caller's
``X-Request-ID``. A result, succeeded or failed, is returned. A refusal raises
:class:`ExecutorRejected` carrying the executor's answer (``executor_status`` 401, 403, 409, 422
or 503, its ``code``, and its ``Retry-After`` as ``retry_after_s``); the exception itself maps
to a 502 in the backend. A transport failure
raises :class:`ExecutorUnreachable`: retrying with the same idempotency key is safe, the executor
acts at most once per key. An answer longer than :data:`MAX_ANSWER_BYTES`, or still arriving
after the timeout, is not read and raises :class:`ExecutorUnreachable` too
(:mod:`aegis.core.upstream`), and so does a 200 whose body is not a result (a proxy's error
page, a truncated answer): the outcome is unknown either way.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from aegis.core.config import Settings
from aegis.core.logging import REQUEST_ID_HEADER, request_id_var
from aegis.core.upstream import IDENTITY, AnswerRefused, MiB, read
from aegis.executor.errors import ExecutorRejected, ExecutorUnreachable
from aegis.executor.schemas import (
    ACTIONS_PATH,
    LOGS_PATH,
    ExecutorActionRequest,
    ExecutorActionResult,
    ExecutorLogsRequest,
    ExecutorLogsResult,
)
from aegis.executor.signing import sign_request

# The most of an executor's answer that is read (aegis.core.upstream); a longer one is treated
# as no answer (ExecutorUnreachable: the outcome is unknown, a retry with the same idempotency
# key is safe). The largest real answer is a logs result: at most 3 pods' 1 MiB of log bytes
# (executor.backends.kubernetes), which JSON escaping can grow a few times over.
MAX_ANSWER_BYTES = 32 * MiB

_Answer = TypeVar("_Answer", bound=BaseModel)


class ExecutorClient:
    def __init__(
        self,
        base_url: str,
        secret: str | SecretStr,
        timeout: float = 30.0,
        *,
        http: httpx.Client | None = None,
    ) -> None:
        """``http`` replaces the transport (tests pass Starlette's TestClient)."""
        plain = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not plain:
            raise ValueError("the executor client needs the EXECUTOR_HMAC_SECRET value")
        self._secret = plain
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._prefix = httpx.URL(base_url).path.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 30.0) -> ExecutorClient:
        return cls(
            settings.effective_executor_url, settings.secret("executor_hmac_secret"), timeout
        )

    def submit(self, request: ExecutorActionRequest) -> ExecutorActionResult:
        """Ask the executor to run (or dry-run) ``request``; its result, succeeded or failed."""
        try:
            status, content, retry_after = self._post(
                ACTIONS_PATH, request.model_dump_json().encode()
            )
        except (httpx.HTTPError, AnswerRefused) as exc:
            raise ExecutorUnreachable(
                f"executor unreachable ({_why(exc)}); the action may or may not have "
                "run: retry with the same idempotency key"
            ) from None
        if status == 200:
            return _parse(
                ExecutorActionResult,
                content,
                "the action may or may not have run: retry with the same idempotency key",
            )
        raise _rejection(status, content, retry_after)

    def logs(self, request: ExecutorLogsRequest) -> ExecutorLogsResult:
        """A workload's recent log lines (read only)."""
        try:
            status, content, retry_after = self._post(LOGS_PATH, request.model_dump_json().encode())
        except (httpx.HTTPError, AnswerRefused) as exc:
            raise ExecutorUnreachable(f"executor unreachable ({_why(exc)})") from None
        if status == 200:
            return _parse(ExecutorLogsResult, content, "no log lines were read")
        raise _rejection(status, content, retry_after)

    def _post(self, route: str, body: bytes) -> tuple[int, bytes, str | None]:
        """``body`` to ``route``, signed with a fresh timestamp and nonce: the answer's status,
        body (at most :data:`MAX_ANSWER_BYTES`, else :class:`AnswerRefused`) and
        ``Retry-After`` header."""
        path = f"{self._prefix}{route}"
        headers = sign_request(secret=self._secret, method="POST", path=path, body=body)
        headers["Content-Type"] = "application/json"
        headers.update(IDENTITY)
        request_id = request_id_var.get()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        with self._http.stream("POST", route, content=body, headers=headers) as response:
            content = read(response, limit=MAX_ANSWER_BYTES)
            return response.status_code, content, response.headers.get("Retry-After")

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ExecutorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _why(exc: httpx.HTTPError | AnswerRefused) -> str:
    """What an :class:`ExecutorUnreachable` message says of the failure."""
    return exc.message if isinstance(exc, AnswerRefused) else type(exc).__name__


def _parse(model: type[_Answer], content: bytes, consequence: str) -> _Answer:
    """A 200's body as ``model``; a body that is not one (something else answering at
    EXECUTOR_URL, or an executor of another version) raises :class:`ExecutorUnreachable`."""
    try:
        return model.model_validate_json(content)
    except ValidationError:
        raise ExecutorUnreachable(
            f"executor answered 200 without a readable {model.__name__}; {consequence}"
        ) from None


def _rejection(status: int, content: bytes, retry_after: str | None) -> ExecutorRejected:
    code, message = "executor_error", f"executor answered {status}"
    try:
        error = json.loads(content)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        pass
    return ExecutorRejected(
        message, executor_status=status, code=code, retry_after_s=_seconds(retry_after)
    )


def _seconds(retry_after: str | None) -> float | None:
    """A ``Retry-After`` of whole seconds (the executor's form); None for anything else."""
    if retry_after is None or not retry_after.strip().isdigit():
        return None
    return float(retry_after.strip())
