"""How the ``kubernetes`` backend reads the API server's answers: with a bound.

The official client reads every answer whole into memory (``urllib3``'s ``response.data``), so
an API server gone wrong, or a proxy in front of it, answering with a body that never ends would
cost the executor its memory, and one trickling in a byte at a time would hold an action for
ever. :func:`guarded` gives the client's ``ApiClient`` a REST layer that reads each answer (a
refusal's too) before the client sees it:

* at most :data:`MAX_ANSWER_BYTES` (or the backend's ``max_answer_bytes``); a body past it, or
  one whose ``Content-Length`` says it would be, is refused and the connection closed without
  reading the rest. Sized well above the largest real answer: one object is at most about
  1.5 MiB (etcd's request limit), the largest read is the list of one deployment's pods, and a
  log read asks for at most 1 MiB;
* within the request's read timeout, counted from the headers: a body trickling in, each piece
  inside the read timeout, is refused once the whole takes longer.

Nothing that may have reached the API server is sent again. urllib3, under the client, retries
a request up to 3 times by default, a DELETE or PUT also after a read timeout or a dropped
connection, when the server may already have acted: a pod deleted, and the retry's answer (404,
or a timeout again) taken for the outcome. Here (:data:`RETRIES`) a request that never reached
the server (connection refused, connect timeout) is retried whatever its method; after that only
a GET or HEAD is; a write whose answer never came fails with the outcome unknown. A busy answer
(429, 503) is not waited out: urllib3 would sleep as long as its ``Retry-After`` asks (up to six
hours) before each retry, holding the action and its executor thread; it is the call's answer,
so the action fails at once, naming it.

A refused answer raises :class:`KubeAnswerRefused` (carrying the answer's headers, so its
``Audit-Id`` is still kept), and so does a successful answer that is not the object asked for
(a proxy's page: :class:`KubeAnswerUnreadable`); the backend turns it into a failed action or a
logs refusal that names the bound (or what the answer was not). :func:`load_api_client` builds
the client from the service account or the kubeconfig.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client import rest

from aegis.core.errors import ConfigError
from aegis.core.upstream import AnswerRefused, MiB, size

MAX_ANSWER_BYTES = 32 * MiB
_PIECE = 64 * 1024
MAX_ERROR_CHARS = 1000  # of the API server's message kept in a failure
RETRIES = urllib3.Retry(
    total=3,
    connect=3,  # never reached the server: safe for every method
    read=3,  # only for allowed_methods; a write that timed out may have acted
    other=0,  # e.g. a TLS failure mid-answer: it may have reached the server
    allowed_methods=frozenset({"GET", "HEAD"}),
    respect_retry_after_header=False,  # a 429 or 503 is the answer, not a wait of its choosing
)


class KubeAnswerRefused(AnswerRefused):
    """The API server's answer was too large or too slow: not read."""

    def __init__(self, reason: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"the kubernetes API {reason}; not read")
        self.headers = headers


class KubeAnswerUnreadable(KubeAnswerRefused):
    """A successful answer that is not the object asked for (a proxy's page, a body that is not
    JSON or not of that kind, ``null``), or one without what is read of it (``lacking``: ``"with
    spec.replicas"``, :mod:`.kube_answers`): the client cannot read it."""

    def __init__(
        self, status: int, kind: str, headers: Mapping[str, str], lacking: str | None = None
    ) -> None:
        AnswerRefused.__init__(
            self,
            f"the kubernetes API answered {status} with something that is not a {kind}"
            + (f" {lacking}" if lacking else ""),
        )
        self.headers = headers


def _readable(api_client: Any) -> None:
    """Make ``api_client`` raise :class:`KubeAnswerUnreadable` for a 2xx answer it cannot turn
    into the object asked for, instead of the parser's or the model's own error (a JSON, Unicode
    or pydantic error that no caller expects: a 500, or an action failed without its audit ids)
    or, for JSON ``null``, ``None`` where a model was asked for.
    An error answer (4xx, 5xx) stays the client's ``ApiException``."""
    deserialize = api_client.response_deserialize

    def response_deserialize(response_data: Any, response_types_map: Any = None) -> Any:
        status = response_data.status
        kind = (response_types_map or {}).get(str(status)) or "object"
        unreadable: BaseException | None = None
        try:
            answer = deserialize(response_data=response_data, response_types_map=response_types_map)
        except client.ApiException as exc:
            if exc.status:  # an error answer, as the API server sent it
                raise
            unreadable = exc  # status 0: a content type the client cannot read
        except (ValueError, TypeError, RecursionError) as exc:
            unreadable = exc
        else:
            if answer.data is not None or not isinstance(getattr(client, kind, None), type):
                return answer
            # JSON null where an object was asked for: a model of nothing
        raise KubeAnswerUnreadable(status, kind, response_data.headers) from unreadable

    api_client.response_deserialize = response_deserialize


class _Answer:
    """What the client reads of a urllib3 response, with the body already read (bounded)."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, data: bytes) -> None:
        self.status = raw.status
        self.reason = raw.reason
        self.headers = raw.headers
        self.data = data

    def getheaders(self) -> Any:
        return self.headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


class _BoundedRestClient(rest.RESTClientObject):
    def __init__(self, configuration: Any, *, limit: int) -> None:
        super().__init__(configuration)
        self.limit = limit

    def request(
        self,
        method: str,
        url: str,
        headers: Any = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> rest.RESTResponse:
        answer = super().request(  # type: ignore[no-untyped-call]
            method,
            url,
            headers=headers,
            body=body,
            post_params=post_params,
            _request_timeout=_request_timeout,
        )
        raw: urllib3.BaseHTTPResponse = answer.response
        within_s = _request_timeout[1] if isinstance(_request_timeout, tuple) else _request_timeout
        try:
            data = read(raw, limit=self.limit, within_s=within_s)
        except BaseException:
            raw.close()  # the rest is never read: this connection is not reused
            raise
        finally:
            raw.release_conn()
        return rest.RESTResponse(_Answer(raw, data))


def load_api_client() -> Any:
    """In-cluster service account first, then the kubeconfig (``KUBECONFIG``/``~/.kube/config``)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise ConfigError(
                "EXECUTOR_BACKEND=kubernetes needs an in-cluster service account or a kubeconfig "
                f"(KUBECONFIG or ~/.kube/config): {str(exc).splitlines()[0]}"
            ) from None
    return client.ApiClient(configuration)


def guarded(api_client: Any, *, limit: int = MAX_ANSWER_BYTES) -> Any:
    """``api_client`` (a ``kubernetes.client.ApiClient``), its answers read at most ``limit``
    bytes each, within the read timeout, its requests retried only as :data:`RETRIES` says
    (whatever its configuration's ``retries``), and a successful answer it cannot read a
    :class:`KubeAnswerUnreadable`."""
    configuration = copy.deepcopy(api_client.configuration)
    configuration.retries = RETRIES
    previous = api_client.rest_client
    api_client.rest_client = _BoundedRestClient(configuration, limit=limit)
    previous.close()
    _readable(api_client)
    return api_client


def api_error(exc: Any) -> str:
    """An ``ApiException`` in one line: its status and the API server's message, at most
    :data:`MAX_ERROR_CHARS` of it."""
    message = exc.reason or "error"
    try:
        status = json.loads(exc.body or "")
        message = status.get("message") or message
    except (TypeError, ValueError, AttributeError, RecursionError):  # RecursionError: nested deep
        pass
    # one line: an admission webhook's denial lists its violations a line each
    line = " ".join(str(message).split())
    if len(line) > MAX_ERROR_CHARS:  # it goes into the result, the audit record and the log
        line = f"{line[:MAX_ERROR_CHARS]}… ({len(line)} characters in all)"
    return f"{exc.status} {line}"


def no_answer(exc: urllib3.exceptions.HTTPError, *, write: bool) -> str:
    """Why a call got no answer, in one line. A write that may have reached the API server was
    not sent again (:data:`RETRIES`): its outcome is unknown, and the line says so."""
    cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
    if not write or isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
        return f"kubernetes API unreachable ({type(cause).__name__})"
    return (
        f"no answer from the kubernetes API ({type(cause).__name__}); "
        "it may or may not have acted: check the target"
    )


def read(raw: urllib3.BaseHTTPResponse, *, limit: int, within_s: float | None) -> bytes:
    """The body of ``raw`` (not preloaded): at most ``limit`` bytes, all within ``within_s``
    seconds (no deadline when None), else :class:`KubeAnswerRefused`."""
    too_large = f"answered more than {size(limit)}"
    declared = raw.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise KubeAnswerRefused(too_large, raw.headers)
    deadline = time.monotonic() + within_s if within_s else math.inf
    body = bytearray()
    while piece := raw.read1(_PIECE):  # decoded (at most _PIECE) bytes, one socket read
        body += piece
        if len(body) > limit:
            raise KubeAnswerRefused(too_large, raw.headers)
        if time.monotonic() > deadline:
            raise KubeAnswerRefused(f"took longer than {within_s:g} s to answer", raw.headers)
    return bytes(body)
