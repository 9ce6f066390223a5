"""OpenSSF Model Signing (OMS) for model directories, compatible with ``model_signing`` 1.x.

A signature is a Sigstore bundle (media type ``application/vnd.dev.sigstore.bundle.v0.3+json``)
holding a DSSE envelope (payload type ``application/vnd.in-toto+json``) over an in-toto
Statement v1 whose predicate (``https://model_signing/signature/v1.0``) lists every file with
its SHA-256 (``"serialization": {"method": "files", "hash_type": "sha256", ...}``); the subject
digest is SHA-256 over the concatenated resource digests. The DSSE signature is ECDSA P-256
over the PAE encoding; the bundle's ``publicKey.hint`` is SHA-256 (hex) of the PEM public key.

What ``model_signing sign key --private_key K DIR`` writes, :func:`verify_directory` accepts,
and what :func:`sign_directory` writes, ``model_signing verify key --public_key cosign.pub
--signature model.sig DIR`` accepts. Aegis refuses symbolic links whatever the signature says,
and accepts only SHA-256 (``files`` or ``shards`` serialization) and v1.0 predicates.

Paths follow ``model_signing``: the signature defaults to ``model.sig`` in the current
directory; a signature file inside the model directory is left out of the signature, as are
``.git``, ``.gitattributes``, ``.github`` and ``.gitignore`` unless ``ignore_git_paths=False``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import mmap
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from aegis.core.files import write_whole
from aegis.registry.cosign_keys import check_p256, public_key_pem
from aegis.registry.errors import (
    ManifestMismatch,
    ModelSourceInvalid,
    SignatureInvalid,
    UntrustedKey,
)
from aegis.registry.hashing import available_cores, sha256_files
from aegis.registry.keyset import KeySet, TrustedKey

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
DEFAULT_SIGNATURE = Path("model.sig")
MAX_BUNDLE_BYTES = 64 << 20


@dataclass(frozen=True)
class VerifiedDirectory:
    model_name: str
    key_id: str
    root_digest: str
    resources: dict[str, str]  # resource name -> hex SHA-256


def pae(payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of an in-toto payload."""
    head = f"DSSEv1 {len(PAYLOAD_TYPE)} {PAYLOAD_TYPE} {len(payload)} ".encode()
    return head + payload


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    return hashlib.sha256(public_key_pem(public_key)).hexdigest()


def resolve_ignored(
    model_dir: Path, paths: Iterable[Path], *, ignore_git_paths: bool = True
) -> list[str]:
    """Ignored paths relative to the model (paths outside it dropped), as model_signing does."""
    root = model_dir.resolve()
    found: set[str] = set(GIT_PATHS) if ignore_git_paths else set()
    for path in paths:
        candidate = (path if path.is_absolute() else Path.cwd() / path).resolve()
        try:
            found.add(candidate.relative_to(root).as_posix())
        except ValueError:
            continue
    return sorted(found)


def _is_ignored(rel: PurePosixPath, ignored: Sequence[PurePosixPath]) -> bool:
    return any(rel.is_relative_to(i) for i in ignored)


def model_files(model_dir: Path, ignored: Iterable[str]) -> dict[str, Path]:
    """``{posix relative name: path}`` of every file not ignored; links and specials refused."""
    if not model_dir.is_dir():
        raise ModelSourceInvalid(f"{model_dir} is not a directory")
    ignore = [PurePosixPath(p) for p in ignored if p not in {"", "."} and ".." not in p.split("/")]
    files: dict[str, Path] = {}
    stack = [model_dir]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                rel = PurePosixPath(path.relative_to(model_dir).as_posix())
                if entry.is_symlink():
                    raise ModelSourceInvalid(f"{rel} is a symbolic link; Aegis refuses links")
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                elif not entry.is_file(follow_symlinks=False):
                    raise ModelSourceInvalid(f"{rel} is not a regular file or directory")
                elif not _is_ignored(rel, ignore):
                    files[str(rel)] = path
    return files


def _root_digest(digests: Iterable[str]) -> str:
    hasher = hashlib.sha256()
    for digest in digests:
        hasher.update(bytes.fromhex(digest))
    return hasher.hexdigest()


def _model_name(model_dir: Path) -> str:
    name = model_dir.name
    return name if name and name != ".." else model_dir.resolve().name


def statement(model_name: str, resources: dict[str, str], ignore_paths: list[str]) -> bytes:
    """The in-toto statement for ``resources`` (name -> hex SHA-256), as JSON bytes."""
    names = sorted(resources, key=lambda n: PurePosixPath(n).parts)
    items = [{"name": n, "algorithm": "sha256", "digest": resources[n]} for n in names]
    document = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": model_name, "digest": {"sha256": _root_digest(resources[n] for n in names)}}
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": ignore_paths,
            },
            "resources": items,
        },
    }
    return json.dumps(document, indent=2).encode()


def sign_directory(
    model_dir: Path,
    private_key: ec.EllipticCurvePrivateKey,
    *,
    signature: Path = DEFAULT_SIGNATURE,
    ignore_paths: Iterable[Path] = (),
    ignore_git_paths: bool = True,
    workers: int | None = None,
) -> Path:
    """Write an OMS signature of ``model_dir`` to ``signature``; return its path."""
    check_p256(private_key)
    ignored = resolve_ignored(
        model_dir, [*ignore_paths, signature], ignore_git_paths=ignore_git_paths
    )
    files = model_files(model_dir, ignored)
    digests = sha256_files(list(files.values()), workers=workers)
    resources = {name: digests[path].hex() for name, path in files.items()}
    payload = statement(_model_name(model_dir), resources, ignored)
    der = private_key.sign(pae(payload), ec.ECDSA(hashes.SHA256()))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": key_hint(private_key.public_key())},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(der).decode(), "keyid": ""}],
        },
    }
    # Whole or not at all: a full disk leaves any earlier signature as it was, never a cut one.
    write_whole(signature, (json.dumps(bundle, indent=2) + "\n").encode())
    return signature


# --- verification -----------------------------------------------------------------------------
def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid(f"OMS signature: {what} is not base64") from None


def _object(value: Any, what: str) -> dict[str, Any]:
    """``value`` as a JSON object (absent: empty); anything else is a malformed bundle."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SignatureInvalid(f"OMS signature: {what} is not a JSON object")
    return value


def _open_envelope(bundle: dict[str, Any], keyset: KeySet) -> tuple[bytes, TrustedKey]:
    """Check the bundle's DSSE signature; return (payload, signing key)."""
    if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise SignatureInvalid(
            f"not an OMS key-signed bundle (mediaType {bundle.get('mediaType')!r})"
        )
    envelope = _object(bundle.get("dsseEnvelope"), "dsseEnvelope")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise SignatureInvalid(f"unexpected DSSE payload type {envelope.get('payloadType')!r}")
    payload = _b64(envelope.get("payload"), "payload")
    listed = envelope.get("signatures") or []
    if not isinstance(listed, list):
        raise SignatureInvalid("OMS signature: dsseEnvelope.signatures is not a list")
    signatures = [_b64(_object(s, "signature").get("sig"), "signature") for s in listed]
    if not signatures:
        raise SignatureInvalid("the DSSE envelope holds no signature")
    material = _object(bundle.get("verificationMaterial"), "verificationMaterial")
    hint = _object(material.get("publicKey"), "publicKey").get("hint")
    candidates = list(keyset)
    if hint:
        candidates = [k for k in keyset if hmac.compare_digest(key_hint(k.public_key), str(hint))]
        if not candidates:
            raise UntrustedKey(
                f"model signed by a key that is not trusted (public key hint {str(hint)[:16]}…; "
                f"trusted: {', '.join(keyset.ids)})"
            )
    encoded = pae(payload)
    for key in candidates:
        for sig in signatures:
            try:
                key.public_key.verify(sig, encoded, ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                continue
            return payload, key
    raise SignatureInvalid("the OMS signature does not verify under any trusted key")


def _parse_statement(payload: bytes) -> tuple[str, dict[str, Any], list[tuple[str, str]]]:
    try:
        doc = json.loads(payload)
        if doc["_type"] != STATEMENT_TYPE or doc["predicateType"] != PREDICATE_TYPE:
            raise SignatureInvalid(
                f"unsupported statement {doc['_type']!r} / predicate {doc['predicateType']!r}"
            )
        (subject,) = doc["subject"]
        serialization = dict(doc["predicate"]["serialization"])
        listed = doc["predicate"]["resources"]
        algorithms = {str(r["algorithm"]) for r in listed}
        resources = [(str(r["name"]), str(r["digest"]).lower()) for r in listed]
        root = str(subject["digest"]["sha256"])
    except (ValueError, KeyError, TypeError):
        raise SignatureInvalid("the OMS statement is malformed") from None
    expected = {"sha256"}
    if serialization.get("method") == "shards":
        try:
            expected = {f"sha256-sharded-{int(serialization['shard_size'])}"}
        except (KeyError, TypeError, ValueError):
            raise SignatureInvalid("the OMS statement has no valid shard_size") from None
    if algorithms - expected:
        raise SignatureInvalid(f"unsupported resource digest algorithm(s) {sorted(algorithms)}")
    if len({name for name, _ in resources}) != len(resources):
        raise SignatureInvalid("the OMS statement lists a resource twice")
    if not hmac.compare_digest(_root_digest(d for _, d in resources), root.lower()):
        raise SignatureInvalid("the OMS statement's subject digest does not cover its resources")
    if serialization.get("hash_type") != "sha256":
        raise SignatureInvalid(f"unsupported hash type {serialization.get('hash_type')!r}")
    return str(subject.get("name", "")), serialization, resources


def _expected_shards(files: dict[str, Path], shard_size: int) -> dict[str, tuple[Path, int, int]]:
    shards: dict[str, tuple[Path, int, int]] = {}
    for name, path in files.items():
        size = path.stat().st_size
        for start in range(0, size, shard_size):  # an empty file has no shard (model_signing)
            end = min(start + shard_size, size)
            shards[f"{name}:{start}:{end}"] = (path, start, end)
    return shards


def _sha256_range(job: tuple[Path, int, int]) -> bytes:
    path, start, end = job
    digest = hashlib.sha256()
    if end > start:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                for offset in range(start, end, 8 << 20):
                    window = view[offset : min(offset + (8 << 20), end)]
                    digest.update(window)
                    window.release()
            finally:
                view.release()
    return digest.digest()


def verify_directory(
    model_dir: Path,
    keyset: KeySet,
    *,
    signature: Path = DEFAULT_SIGNATURE,
    ignore_paths: Iterable[Path] = (),
    ignore_git_paths: bool = True,
    workers: int | None = None,
) -> VerifiedDirectory:
    """Check an OMS signature and that ``model_dir`` holds exactly the signed files."""
    keyset.require_nonempty()
    try:
        raw = signature.read_bytes()
        if len(raw) > MAX_BUNDLE_BYTES:
            raise SignatureInvalid("OMS signature file is too large")
        bundle = json.loads(raw)
    except OSError as exc:
        raise SignatureInvalid(f"cannot read signature {signature}: {exc.strerror}") from None
    except ValueError:
        raise SignatureInvalid(f"{signature} is not a JSON Sigstore bundle") from None
    if not isinstance(bundle, dict):
        raise SignatureInvalid(f"{signature} is not a JSON Sigstore bundle")
    payload, key = _open_envelope(bundle, keyset)
    name, serialization, resources = _parse_statement(payload)
    signed_ignores = [str(p) for p in serialization.get("ignore_paths") or []]
    ignored = resolve_ignored(
        model_dir, [*ignore_paths, signature], ignore_git_paths=ignore_git_paths
    )
    files = model_files(model_dir, [*ignored, *signed_ignores])
    method = serialization.get("method")
    if method == "files":
        jobs = {n: (p, 0, -1) for n, p in files.items()}
    elif method == "shards":
        shard_size = int(serialization["shard_size"])
        if shard_size <= 0:
            raise SignatureInvalid("the OMS statement has no valid shard_size")
        jobs = _expected_shards(files, shard_size)
    else:
        raise SignatureInvalid(f"unsupported OMS serialization {method!r}")
    expected = dict(resources)
    _compare_names(set(jobs), set(expected))
    actual = _hash_jobs(jobs, workers)
    changed = sorted(n for n in expected if not hmac.compare_digest(actual[n], expected[n]))
    if changed:
        raise ManifestMismatch(f"files changed since signing: {', '.join(changed[:5])}")
    return VerifiedDirectory(
        model_name=name,
        key_id=key.key_id,
        root_digest=_root_digest(d for _, d in resources),
        resources=expected,
    )


def _compare_names(actual: set[str], expected: set[str]) -> None:
    added, removed = sorted(actual - expected), sorted(expected - actual)
    if added:
        raise ManifestMismatch(f"files not covered by the signature: {', '.join(added[:5])}")
    if removed:
        raise ManifestMismatch(f"signed files are missing: {', '.join(removed[:5])}")


def _hash_jobs(jobs: dict[str, tuple[Path, int, int]], workers: int | None) -> dict[str, str]:
    whole = {n: p for n, (p, _, end) in jobs.items() if end < 0}
    if whole:
        digests = sha256_files(list(whole.values()), workers=workers)
        return {n: digests[p].hex() for n, p in whole.items()}
    ordered = sorted(jobs, key=lambda n: jobs[n][2] - jobs[n][1], reverse=True)
    with ThreadPoolExecutor(max_workers=workers or available_cores()) as pool:
        results = pool.map(lambda n: _sha256_range(jobs[n]), ordered)
        return {n: d.hex() for n, d in zip(ordered, results, strict=True)}
