"""The shared signing module: what a valid signature covers, and every way one is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aegis.executor.errors import SignatureMissing, SignatureRejected, TimestampOutOfWindow
from aegis.executor.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_request,
    verify_request,
)

CURRENT = "current-secret-" + "a" * 32
PREVIOUS = "previous-secret-" + "b" * 32
NOW = 1_800_000_000
BODY = b'{"action":"scale_deployment"}'


def _signed(secret: str = CURRENT, *, body: bytes = BODY, ts: int = NOW) -> dict[str, str]:
    return sign_request(secret=secret, method="POST", path="/v1/actions", body=body, timestamp=ts)


def _verify(
    headers: dict[str, str],
    *,
    body: bytes = BODY,
    method: str = "POST",
    path: str = "/v1/actions",
    now: float = NOW,
    secrets: tuple[str | None, ...] = (CURRENT, None),
) -> str:
    verified = verify_request(
        secrets=list(secrets), method=method, path=path, headers=headers, body=body, now=now
    )
    return verified.key


def test_a_signed_request_verifies_with_the_current_secret() -> None:
    assert _verify(_signed()) == "current"


def test_the_previous_secret_verifies_during_rotation() -> None:
    assert _verify(_signed(PREVIOUS), secrets=(CURRENT, PREVIOUS)) == "previous"


def test_the_previous_secret_is_refused_when_not_configured() -> None:
    with pytest.raises(SignatureRejected, match="signature does not match"):
        _verify(_signed(PREVIOUS))


def test_a_wrong_secret_is_refused() -> None:
    with pytest.raises(SignatureRejected, match="signature does not match"):
        _verify(_signed("someone-else-" + "z" * 32), secrets=(CURRENT, PREVIOUS))


@pytest.mark.parametrize(
    ("field", "value"),
    [("method", "PUT"), ("path", "/v1/actions?x=1"), ("body", BODY + b" ")],
)
def test_method_path_and_body_are_covered(field: str, value: object) -> None:
    kwargs = {field: value}
    with pytest.raises(SignatureRejected, match="signature does not match"):
        _verify(_signed(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("header", [TIMESTAMP_HEADER, NONCE_HEADER])
def test_changing_a_signed_header_breaks_the_signature(header: str) -> None:
    headers = _signed()
    headers[header] = str(NOW + 1) if header == TIMESTAMP_HEADER else "n" * 32
    with pytest.raises(SignatureRejected, match="signature does not match"):
        _verify(headers)


@pytest.mark.parametrize("header", [TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER])
def test_a_missing_header_is_named(header: str) -> None:
    headers = _signed()
    del headers[header]
    with pytest.raises(SignatureMissing, match=f"missing {header} header"):
        _verify(headers)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (SIGNATURE_HEADER, "sha256=abc"),
        (SIGNATURE_HEADER, "v1=" + "G" * 64),
        (TIMESTAMP_HEADER, "yesterday"),
        (NONCE_HEADER, "short"),
        (NONCE_HEADER, "has spaces in it, sixteen+"),
    ],
)
def test_malformed_headers_are_refused(header: str, value: str) -> None:
    headers = _signed()
    headers[header] = value
    with pytest.raises(SignatureRejected, match=f"malformed {header}"):
        _verify(headers)


@pytest.mark.parametrize("header", [TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER])
def test_a_header_value_with_a_trailing_newline_is_refused(header: str) -> None:
    """The patterns ended in ``$``, which also matches before a final newline: a signature
    ``v1=<hex>\n`` verified, and a nonce ending in a newline was signed and accepted."""
    nonce = "n" * 32 + ("\n" if header == NONCE_HEADER else "")
    headers = sign_request(
        secret=CURRENT, method="POST", path="/v1/actions", body=BODY, timestamp=NOW, nonce=nonce
    )
    if header != NONCE_HEADER:
        headers[header] += "\n"
    with pytest.raises(SignatureRejected, match=f"malformed {header}"):
        _verify(headers)


@pytest.mark.parametrize("offset", [-61, 61])
def test_a_timestamp_more_than_sixty_seconds_away_is_refused(offset: int) -> None:
    with pytest.raises(TimestampOutOfWindow, match="outside ±60 s"):
        _verify(_signed(ts=NOW + offset))


@pytest.mark.parametrize("offset", [-60, 0, 60])
def test_a_timestamp_within_sixty_seconds_is_accepted(offset: int) -> None:
    assert _verify(_signed(ts=NOW + offset)) == "current"


def test_header_names_are_matched_case_insensitively() -> None:
    headers = {key.lower(): value for key, value in _signed().items()}
    assert _verify(headers) == "current"


def test_each_signature_gets_a_fresh_nonce() -> None:
    assert _signed()[NONCE_HEADER] != _signed()[NONCE_HEADER]


@given(
    body=st.binary(min_size=1, max_size=256),
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_change_to_the_body_is_refused(body: bytes, position: int, flip: int) -> None:
    headers = _signed(body=body)
    index = position % len(body)
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(SignatureRejected):
        _verify(headers, body=tampered)
