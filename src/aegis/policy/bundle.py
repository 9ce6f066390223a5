"""Integrity of policy sets: a canonical digest and Ed25519-signed, reproducible bundles.

Canonical form of a set: the documents' :meth:`Policy.canonical_dict` sorted by ``(id, version)``,
as one JSON array with keys sorted, no insignificant whitespace, non-ASCII kept, UTF-8::

    digest = hex(SHA-256(canonical_policies(policies)))      # order of the input is irrelevant

A bundle is an uncompressed USTAR archive with exactly three regular files, in this order, each
with mtime 0, mode 0644, uid/gid 0 (so the same set, key and serial always give the same bytes):

* ``policies.json`` - the canonical form above (its SHA-256 is the digest);
* ``digest.txt``     - the hex digest and a newline;
* ``signature.json`` - ``{"algorithm": "ed25519", "key_id": hex(SHA-256(raw public key)),
  "serial": N, "signature": base64(Ed25519(b"aegis-policy-bundle/v2\\n" + digest + b"\\n" +
  decimal(N) + b"\\n"))}``.

The serial (1 to 2**63 - 1, chosen at export) is signed with the digest, so it cannot be changed
or stripped; the store refuses a bundle whose serial is not above the highest it has applied (a
rollback). A format v1 bundle (written before serials) has no ``serial`` and its signature is
over ``b"aegis-policy-bundle/v1\\n" + digest``; it still verifies here, with ``serial=None``.
The two prefixes keep the formats apart: a v2 signature never verifies as v1, nor the reverse.

:func:`verify_bundle` never extracts to disk; it refuses anything else in the archive, a
signature no trusted key verifies, a digest that does not match ``policies.json``, a serial that
is not an integer in range, and a ``policies.json`` that is not in canonical form (so the
returned set's digest is the one that was signed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import itertools
import json
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from aegis.policy.document import Policy
from aegis.policy.errors import (
    BundleDigestMismatch,
    BundleFormatError,
    BundleSignatureInvalid,
    DuplicatePolicy,
    PolicyError,
)

SIGNED_PREFIX_V1 = b"aegis-policy-bundle/v1\n"
SIGNED_PREFIX = b"aegis-policy-bundle/v2\n"
MAX_SERIAL = 2**63 - 1  # fits a signed 64-bit integer everywhere it is stored or compared
POLICIES = "policies.json"
DIGEST = "digest.txt"
SIGNATURE = "signature.json"
MEMBERS = (POLICIES, DIGEST, SIGNATURE)
MAX_BUNDLE_BYTES = 32 << 20
_MAX_SMALL_MEMBER = 4096
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}\n")


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def canonical_policies(policies: Iterable[Policy]) -> bytes:
    """The canonical bytes of a set; raises :class:`DuplicatePolicy` if an id repeats."""
    ordered = sorted(policies, key=lambda p: p.ref)
    for before, after in itertools.pairwise(ordered):
        if before.id == after.id:
            raise DuplicatePolicy(f"policy {after.id!r} appears twice in one set")
    return canonical_json([p.canonical_dict() for p in ordered])


def policy_set_digest(policies: Iterable[Policy]) -> str:
    """Hex SHA-256 of the canonical form: independent of the order policies are given in."""
    return hashlib.sha256(canonical_policies(policies)).hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """What a bundle that verified holds: its policies (sorted by id) and signed metadata."""

    policies: list[Policy]
    digest: str
    serial: int | None  # None: a format v1 bundle, from before serials
    key_id: str  # of the trusted key that verified it

    @property
    def format(self) -> int:
        return 1 if self.serial is None else 2


def _valid_serial(value: object) -> bool:
    return type(value) is int and 1 <= value <= MAX_SERIAL


def signed_message(digest: str, serial: int | None) -> bytes:
    """The bytes a bundle's signature covers (v1 when ``serial`` is None)."""
    if serial is None:
        return SIGNED_PREFIX_V1 + digest.encode("ascii")
    return SIGNED_PREFIX + f"{digest}\n{serial}\n".encode("ascii")


def export_bundle(
    policies: Iterable[Policy], private_key: Ed25519PrivateKey, *, serial: int
) -> bytes:
    """A signed bundle of ``policies``; byte-for-byte reproducible for the same set, key and
    serial. ``serial`` must grow from one bundle to the next: the store refuses an older one."""
    if not _valid_serial(serial):
        raise ValueError(f"a bundle serial is an integer from 1 to {MAX_SERIAL}")
    body = canonical_policies(policies)
    digest = hashlib.sha256(body).hexdigest()
    signature = private_key.sign(signed_message(digest, serial))
    envelope = {
        "algorithm": "ed25519",
        "key_id": key_id(private_key.public_key()),
        "serial": serial,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    files = {
        POLICIES: body,
        DIGEST: f"{digest}\n".encode("ascii"),
        SIGNATURE: canonical_json(envelope) + b"\n",
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in MEMBERS:
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    return out.getvalue()


def read_bundle(data: bytes, trusted_public_keys: Iterable[Ed25519PublicKey]) -> list[Policy]:
    """The policies of a verified bundle, sorted by id; raises a :class:`BundleError` otherwise.
    To apply a bundle use :func:`verify_bundle`: the store needs its serial."""
    return verify_bundle(data, trusted_public_keys).policies


def verify_bundle(data: bytes, trusted_public_keys: Iterable[Ed25519PublicKey]) -> VerifiedBundle:
    """A verified bundle's policies and signed metadata; raises a :class:`BundleError` otherwise."""
    files = _members(bytes(data))
    digest_text = files[DIGEST].decode("ascii", errors="replace")
    if _HEX_DIGEST.fullmatch(digest_text) is None:
        raise BundleFormatError(f"{DIGEST} must hold one hex SHA-256 digest and a newline")
    digest = digest_text[:-1]
    signature, serial = _signature(files[SIGNATURE])
    keys = list(trusted_public_keys)
    if not keys:
        raise BundleSignatureInvalid("no trusted public key to verify the bundle with")
    message = signed_message(digest, serial)
    signer = next((key for key in keys if _verifies(key, signature, message)), None)
    if signer is None:
        raise BundleSignatureInvalid("the bundle signature is not from a trusted key")
    actual = hashlib.sha256(files[POLICIES]).hexdigest()
    if not hmac.compare_digest(actual, digest):
        raise BundleDigestMismatch(f"{POLICIES} does not match the signed digest")
    return VerifiedBundle(
        policies=_policies(files[POLICIES]), digest=digest, serial=serial, key_id=key_id(signer)
    )


def _verifies(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _signature(raw: bytes) -> tuple[bytes, int | None]:
    """The signature and the serial (None: absent, a v1 bundle) from ``signature.json``."""
    try:
        envelope = json.loads(raw)
        if not isinstance(envelope, dict) or envelope.get("algorithm") != "ed25519":
            raise ValueError("algorithm must be ed25519")
        signature = base64.b64decode(envelope["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise BundleFormatError(f"{SIGNATURE} is malformed: {exc}") from None
    if len(signature) != 64:
        raise BundleFormatError(f"{SIGNATURE}: an Ed25519 signature is 64 bytes")
    serial = envelope.get("serial")
    if "serial" in envelope and not _valid_serial(serial):
        raise BundleFormatError(f"{SIGNATURE}: serial must be an integer from 1 to {MAX_SERIAL}")
    return signature, serial


def _policies(body: bytes) -> list[Policy]:
    from aegis.policy.loader import parse_policies

    try:
        policies = parse_policies(body, source=POLICIES, format="json")
        canonical = canonical_policies(policies)
    except PolicyError as exc:
        raise BundleFormatError(f"{POLICIES}: {exc.message}") from None
    if canonical != body:
        raise BundleFormatError(f"{POLICIES} is not in canonical form")
    return sorted(policies, key=lambda p: p.ref)


def _members(data: bytes) -> dict[str, bytes]:
    """The three members' bytes, read in memory; anything unexpected refuses the bundle."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(f"bundle larger than {MAX_BUNDLE_BYTES} bytes")
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if member.name not in MEMBERS:
                    raise BundleFormatError(f"unexpected member {member.name!r}")
                if not member.isreg():
                    raise BundleFormatError(f"member {member.name!r} is not a regular file")
                if member.name in files:
                    raise BundleFormatError(f"member {member.name!r} appears twice")
                limit = MAX_BUNDLE_BYTES if member.name == POLICIES else _MAX_SMALL_MEMBER
                if member.size > limit:
                    raise BundleFormatError(f"member {member.name!r} is too large")
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - regular files always have content
                    raise BundleFormatError(f"member {member.name!r} has no content")
                files[member.name] = handle.read(member.size)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BundleFormatError(f"not a policy bundle: {exc}") from None
    missing = [name for name in MEMBERS if name not in files]
    if missing:
        raise BundleFormatError(f"bundle lacks {', '.join(missing)}")
    return files
