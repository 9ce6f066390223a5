"""Answers from other services, read with a bound.

The backend reads answers from services whose behaviour it does not control: the AI engine,
Prometheus, the executor, an OpenID Connect provider. One gone wrong or compromised, or a URL
pointing at the wrong thing (a log tail, a media stream, a proxy's error loop), may answer with
a body that never ends or that arrives a byte at a time. Such an answer must cost the backend
neither its memory nor a job stuck on one read, so every answer is streamed and read:

* up to a limit in bytes, named beside each caller and sized well above the largest real
  answer; a body past it (or one whose ``Content-Length`` says it would be) is refused, and
  the connection closed without reading the rest;
* within a deadline (by default the request's read timeout, counted from the headers): a body
  trickling in, each piece inside the read timeout, is refused once the whole takes longer;
* uncompressed: requests send ``Accept-Encoding: identity`` (:data:`IDENTITY`) and an answer
  compressed anyway is refused, since a few KiB of gzip or brotli inflate past any limit
  before a byte of it could be counted.

A refused answer raises :class:`AnswerRefused`; each caller handles it exactly as it handles
any other bad answer from that service. The log line names the service's host and path, never
the body, the query string or credentials in the URL.
"""

from __future__ import annotations

import math
import time

import httpx

from aegis.core.errors import AegisError
from aegis.core.logging import get_logger

log = get_logger(__name__)
MiB = 1 << 20
IDENTITY = {"Accept-Encoding": "identity"}  # the headers every bounded request sends


class AnswerRefused(AegisError):
    """An upstream's answer was too large, too slow or compressed: not read."""

    code = "upstream_answer_refused"
    status_code = 502


def size(limit: int) -> str:
    """``limit`` as the messages say it: ``16 MiB``, ``512 KiB``, ``100 bytes``."""
    if limit >= MiB and limit % MiB == 0:
        return f"{limit // MiB} MiB"
    if limit >= 1024 and limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"


def read(response: httpx.Response, *, limit: int, within_s: float | None = None) -> bytes:
    """The body of a streamed ``response`` (``client.stream(...)``), at most ``limit`` bytes,
    all of it within ``within_s`` seconds (default: the request's read timeout; no deadline
    when it has none). :class:`AnswerRefused` otherwise."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in {"", "identity"}:
        raise _refused(response, f"answered compressed ({encoding[:32]}) when asked not to")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _refused(response, f"answered more than {size(limit)}")
    if within_s is None:
        timeouts = response.request.extensions.get("timeout") or {}
        within_s = timeouts.get("read")
    deadline = time.monotonic() + within_s if within_s else math.inf
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > limit:
            raise _refused(response, f"answered more than {size(limit)}")
        if time.monotonic() > deadline:
            raise _refused(response, f"took longer than {within_s:g} s to answer")
    return bytes(body)


def _refused(response: httpx.Response, reason: str) -> AnswerRefused:
    url = response.request.url
    log.warning(
        "upstream_answer_refused",
        upstream=f"{url.scheme}://{url.netloc.decode()}{url.path}",  # no userinfo, no query
        status=response.status_code,
        reason=reason,
    )
    return AnswerRefused(reason)
