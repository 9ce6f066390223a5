"""HMAC-SHA256 request signing, shared by the executor (verify) and its client (sign).

The signature covers, one per line::

    aegis-executor-v1
    <METHOD>
    <path, with ?query when there is one>
    <timestamp: Unix seconds>
    <nonce>
    <hex SHA-256 of the raw body>

and travels in three headers: ``X-Aegis-Timestamp``, ``X-Aegis-Nonce`` and
``X-Aegis-Signature: v1=<hex>``. The verifier accepts the current secret and, during a rotation,
the previous one; every comparison is constant-time. Replay protection needs one more step the
caller takes after :func:`verify_request` succeeds: claiming the nonce in a
:class:`aegis.executor.nonces.NonceStore`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from secrets import token_urlsafe

from aegis.executor.errors import SignatureMissing, SignatureRejected, TimestampOutOfWindow

SCHEME = "aegis-executor-v1"
TIMESTAMP_HEADER = "X-Aegis-Timestamp"
NONCE_HEADER = "X-Aegis-Nonce"
SIGNATURE_HEADER = "X-Aegis-Signature"
MAX_CLOCK_SKEW_S = 60

# Whole values only (fullmatch): ``$`` would also match before a final newline.
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v1=([0-9a-f]{64})")


@dataclass(frozen=True)
class VerifiedRequest:
    timestamp: int
    nonce: str
    key: str  # "current" or "previous": which secret matched (never the secret itself)


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_string(*, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return "\n".join((SCHEME, method.upper(), path, timestamp, nonce, body_digest(body))).encode()


def _mac(secret: str | bytes, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    return token_urlsafe(24)


def sign_request(
    *,
    secret: str | bytes,
    method: str,
    path: str,
    body: bytes,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The three headers that make ``method path body`` acceptable to the executor."""
    if not secret:
        raise ValueError("an empty secret cannot sign")
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or new_nonce()
    message = canonical_string(method=method, path=path, timestamp=ts, nonce=nonce, body=body)
    return {
        TIMESTAMP_HEADER: ts,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: f"v1={_mac(secret, message)}",
    }


def verify_request(
    *,
    secrets: Sequence[str | bytes | None],
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    max_skew_s: int = MAX_CLOCK_SKEW_S,
) -> VerifiedRequest:
    """Check the signature headers; raise :class:`SignatureRejected` (401) with one line.

    ``secrets`` is ``[current, previous]``; ``None`` or empty entries are skipped. A request
    passes when its timestamp is within ``max_skew_s`` of ``now`` and its signature matches one
    of the secrets.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    ts_text = lowered.get(TIMESTAMP_HEADER.lower())
    nonce = lowered.get(NONCE_HEADER.lower())
    signature = lowered.get(SIGNATURE_HEADER.lower())
    for name, value in (
        (SIGNATURE_HEADER, signature),
        (TIMESTAMP_HEADER, ts_text),
        (NONCE_HEADER, nonce),
    ):
        if not value:
            raise SignatureMissing(f"missing {name} header")
        if "," in value:  # sent more than once, or as a list: which one was meant?
            raise SignatureRejected(f"malformed {name} header: more than one value")
    assert ts_text is not None and nonce is not None and signature is not None
    if not _TIMESTAMP.fullmatch(ts_text):
        raise SignatureRejected(f"malformed {TIMESTAMP_HEADER} header: expected Unix seconds")
    if not _NONCE.fullmatch(nonce):
        raise SignatureRejected(
            f"malformed {NONCE_HEADER} header: expected 16-128 characters of [A-Za-z0-9_-]"
        )
    match = _SIGNATURE.fullmatch(signature)
    if match is None:
        raise SignatureRejected(f"malformed {SIGNATURE_HEADER} header: expected v1=<64 hex>")
    timestamp = int(ts_text)
    current = time.time() if now is None else now
    if abs(current - timestamp) > max_skew_s:
        raise TimestampOutOfWindow(f"timestamp outside ±{max_skew_s} s of the executor clock")
    message = canonical_string(method=method, path=path, timestamp=ts_text, nonce=nonce, body=body)
    presented = match.group(1)
    matched: str | None = None
    for label, secret in zip(("current", "previous"), secrets, strict=False):
        if not secret:
            continue
        # Every configured secret is tried, so timing does not tell which one matched.
        if hmac.compare_digest(_mac(secret, message), presented) and matched is None:
            matched = label
    if matched is None:
        raise SignatureRejected("signature does not match")
    return VerifiedRequest(timestamp=timestamp, nonce=nonce, key=matched)
