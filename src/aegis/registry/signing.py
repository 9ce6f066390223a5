"""Blob signatures in ``cosign sign-blob --key`` format.

A signature file holds the base64 (standard alphabet, no newline) of an ASN.1 DER ECDSA P-256
signature over the SHA-256 of the file, exactly what ``cosign sign-blob --key cosign.key
--output-signature F --tlog-upload=false`` writes; ``cosign verify-blob --key cosign.pub
--signature F --insecure-ignore-tlog=true`` accepts Aegis's, and Aegis accepts cosign's.

A bare signature names no key, so a signature that verifies under none of the trusted keys is
``signature_invalid`` (wrong file, wrong key or tampered: ECDSA cannot tell these apart). When
the caller knows which key claims to have signed (``signer_key``), a valid signature by a key
outside the trusted set is reported as ``untrusted_key``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mmap
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from aegis.registry.cosign_keys import check_p256, key_id
from aegis.registry.errors import SignatureInvalid, UntrustedKey
from aegis.registry.keyset import KeySet, TrustedKey

MAX_SIGNATURE_BYTES = 4096
HASH_WINDOW = 8 << 20
_PREHASHED = ec.ECDSA(utils.Prehashed(hashes.SHA256()))

Progress = Callable[[int], None]


@dataclass(frozen=True)
class BlobVerification:
    digest: str  # hex SHA-256 of the blob
    key_id: str


def sha256_file(path: Path, *, progress: Progress | None = None) -> bytes:
    """SHA-256 of a file at (nearly) the speed of hashing memory.

    The file is memory-mapped and hashed window by window straight from the page cache: no
    copy into Python buffers, constant memory, and the kernel reads ahead of the hash.
    """
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return digest.digest()
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            if hasattr(mapped, "madvise"):
                mapped.madvise(mmap.MADV_SEQUENTIAL)
            view = memoryview(mapped)
            try:
                for offset in range(0, size, HASH_WINDOW):
                    window = view[offset : offset + HASH_WINDOW]
                    digest.update(window)
                    window.release()
                    if progress is not None:
                        progress(min(HASH_WINDOW, size - offset))
            finally:
                view.release()
    return digest.digest()


def sign_digest(digest: bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """DER ECDSA signature over a SHA-256 digest."""
    check_p256(private_key)
    return private_key.sign(digest, _PREHASHED)


def encode_signature(der: bytes) -> bytes:
    """The ``.sig`` file content: base64, no trailing newline (as cosign writes it)."""
    return base64.b64encode(der)


def decode_signature(data: bytes) -> bytes:
    """DER signature from a ``.sig`` file: base64 (surrounding whitespace allowed) or raw DER."""
    if len(data) > MAX_SIGNATURE_BYTES:
        raise SignatureInvalid("signature file is too large to be a cosign blob signature")
    text = data.strip()
    try:
        der = base64.b64decode(text, validate=True)
    except binascii.Error:
        der = data  # cosign also accepts a raw signature
    if not der or der[0] != 0x30:
        raise SignatureInvalid("signature is neither base64 nor DER of an ECDSA signature")
    try:
        utils.decode_dss_signature(der)
    except ValueError:
        raise SignatureInvalid("signature is not a valid ASN.1 DER ECDSA signature") from None
    return der


def sign_blob(path: Path, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The ``.sig`` content for the file at ``path``."""
    return encode_signature(sign_digest(sha256_file(path), private_key))


def _verifies(public_key: ec.EllipticCurvePublicKey, digest: bytes, der: bytes) -> bool:
    try:
        public_key.verify(der, digest, _PREHASHED)
    except InvalidSignature:
        return False
    return True


def verify_digest(
    digest: bytes,
    signature: bytes,
    keyset: KeySet,
    *,
    signer_key: ec.EllipticCurvePublicKey | None = None,
) -> TrustedKey:
    """The trusted key whose signature ``signature`` (DER or .sig content) is over ``digest``.

    Raises :class:`SignatureInvalid`, or :class:`UntrustedKey` when ``signer_key`` made a valid
    signature but is not trusted.
    """
    keyset.require_nonempty()
    der = decode_signature(signature)
    for trusted in keyset:
        if _verifies(trusted.public_key, digest, der):
            return trusted
    if signer_key is not None:
        check_p256(signer_key)
        if _verifies(signer_key, digest, der):
            raise UntrustedKey(
                f"signed by key {key_id(signer_key)}, which is not a trusted key "
                f"(trusted: {', '.join(keyset.ids)})"
            )
    raise SignatureInvalid(
        f"signature does not match this file under any trusted key ({', '.join(keyset.ids)})"
    )


def verify_blob(
    path: Path,
    signature: bytes,
    keyset: KeySet,
    *,
    signer_key: ec.EllipticCurvePublicKey | None = None,
    progress: Progress | None = None,
) -> BlobVerification:
    """Check a cosign blob signature over the file at ``path`` (the signature step alone)."""
    keyset.require_nonempty()
    decode_signature(signature)  # refuse a malformed signature before hashing gigabytes
    digest = sha256_file(path, progress=progress)
    trusted = verify_digest(digest, signature, keyset, signer_key=signer_key)
    return BlobVerification(digest=digest.hex(), key_id=trusted.key_id)
