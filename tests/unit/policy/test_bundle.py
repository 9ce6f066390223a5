"""Set digests and signed bundles: reproducible, order-independent, refused when tampered."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import tarfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.policy import Policy, export_bundle, parse_policy, policy_set_digest, read_bundle
from aegis.policy.bundle import MEMBERS, canonical_policies, key_id, verify_bundle
from aegis.policy.errors import (
    BundleDigestMismatch,
    BundleFormatError,
    BundleSignatureInvalid,
    DuplicatePolicy,
)
from tests.unit.policy.strategies import policy_lists

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _policy(policy_id: str, effect: str = "allow", version: int = 1) -> Policy:
    return parse_policy(
        {
            "id": policy_id,
            "version": version,
            "effect": effect,
            "subjects": ["role:operator"],
            "actions": ["restart_deployment"],
            "resources": {"namespaces": ["staging-*"]},
            "description": "naïve — non-ASCII is kept as UTF-8",
        }
    )


POLICIES = [_policy("b-second", "deny", 3), _policy("a-first")]


def _members(bundle: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def _tar(files: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in files:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _rebuild(bundle: bytes, **replace: bytes) -> bytes:
    members = _members(bundle) | {k.replace("_", "."): v for k, v in replace.items()}
    return _tar([(tarfile.TarInfo(name), members[name]) for name in MEMBERS])


# --- digest -----------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(policy_lists(max_size=6), st.randoms(use_true_random=False))
def test_the_digest_does_not_depend_on_order(policies: list[Policy], rng: random.Random) -> None:
    shuffled = list(policies)
    rng.shuffle(shuffled)
    assert policy_set_digest(policies) == policy_set_digest(shuffled)


def test_the_digest_changes_with_any_field_and_with_the_version() -> None:
    base = policy_set_digest(POLICIES)
    assert len(base) == 64
    bumped = [POLICIES[0].model_copy(update={"version": 4}), POLICIES[1]]
    assert policy_set_digest(bumped) != base
    edited = [POLICIES[0].model_copy(update={"description": "x"}), POLICIES[1]]
    assert policy_set_digest(edited) != base


def test_the_digest_is_sha256_of_the_documented_canonical_json() -> None:
    expected = json.dumps(
        [p.canonical_dict() for p in sorted(POLICIES, key=lambda p: p.id)],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert canonical_policies(POLICIES) == expected
    assert policy_set_digest(POLICIES) == hashlib.sha256(expected).hexdigest()


def test_a_set_with_a_repeated_id_has_no_digest() -> None:
    with pytest.raises(DuplicatePolicy):
        policy_set_digest([_policy("a"), _policy("a", version=2)])


# --- bundles ----------------------------------------------------------------------------------
def test_a_bundle_is_reproducible_and_independent_of_input_order() -> None:
    first = export_bundle(POLICIES, KEY, serial=1)
    assert first == export_bundle(list(reversed(POLICIES)), KEY, serial=1)
    members = _members(first)
    assert list(members) == list(MEMBERS)
    assert members["digest.txt"] == f"{policy_set_digest(POLICIES)}\n".encode()


def test_a_bundle_reads_back_to_the_same_policies_sorted_by_id() -> None:
    policies = read_bundle(
        export_bundle(POLICIES, KEY, serial=1), [OTHER_KEY.public_key(), KEY.public_key()]
    )
    assert policies == sorted(POLICIES, key=lambda p: p.id)
    assert policy_set_digest(policies) == policy_set_digest(POLICIES)


def test_a_bundle_signed_by_an_untrusted_key_is_refused() -> None:
    with pytest.raises(BundleSignatureInvalid):
        read_bundle(export_bundle(POLICIES, OTHER_KEY, serial=1), [KEY.public_key()])
    with pytest.raises(BundleSignatureInvalid, match="no trusted public key"):
        read_bundle(export_bundle(POLICIES, KEY, serial=1), [])


def test_edited_policies_are_refused_by_the_digest() -> None:
    bundle = export_bundle(POLICIES, KEY, serial=1)
    body = _members(bundle)["policies.json"].replace(b'"deny"', b'"allow"')
    with pytest.raises(BundleDigestMismatch):
        read_bundle(_rebuild(bundle, policies_json=body), [KEY.public_key()])


def test_edited_policies_with_a_matching_digest_are_refused_by_the_signature() -> None:
    bundle = export_bundle(POLICIES, KEY, serial=1)
    body = _members(bundle)["policies.json"].replace(b'"deny"', b'"allow"')
    digest = f"{hashlib.sha256(body).hexdigest()}\n".encode()
    with pytest.raises(BundleSignatureInvalid):
        read_bundle(_rebuild(bundle, policies_json=body, digest_txt=digest), [KEY.public_key()])


def test_a_corrupted_signature_is_refused() -> None:
    bundle = export_bundle(POLICIES, KEY, serial=1)
    envelope = json.loads(_members(bundle)["signature.json"])
    raw = bytearray(base64.b64decode(envelope["signature"]))
    raw[10] ^= 0x01
    envelope["signature"] = base64.b64encode(bytes(raw)).decode()
    tampered = _rebuild(bundle, signature_json=json.dumps(envelope).encode())
    with pytest.raises(BundleSignatureInvalid):
        read_bundle(tampered, [KEY.public_key()])


def test_a_signed_but_non_canonical_policies_json_is_refused() -> None:
    body = json.dumps([p.canonical_dict() for p in POLICIES], indent=1).encode()
    digest = hashlib.sha256(body).hexdigest()
    signature = KEY.sign(b"aegis-policy-bundle/v1\n" + digest.encode())
    envelope = {"algorithm": "ed25519", "signature": base64.b64encode(signature).decode()}
    bundle = _rebuild(
        export_bundle(POLICIES, KEY, serial=1),
        policies_json=body,
        digest_txt=f"{digest}\n".encode(),
        signature_json=json.dumps(envelope).encode(),
    )
    with pytest.raises(BundleFormatError, match="not in canonical form"):
        read_bundle(bundle, [KEY.public_key()])


# --- serials (rollback protection) -----------------------------------------------------------
def _v1(policies: list[Policy], key: Ed25519PrivateKey) -> bytes:
    """A bundle as Aegis wrote it before serials: the v1 signed message, no serial."""
    body = canonical_policies(policies)
    digest = hashlib.sha256(body).hexdigest()
    signature = key.sign(b"aegis-policy-bundle/v1\n" + digest.encode())
    envelope = {
        "algorithm": "ed25519",
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(signature).decode(),
    }
    return _tar(
        [
            (tarfile.TarInfo("policies.json"), body),
            (tarfile.TarInfo("digest.txt"), f"{digest}\n".encode()),
            (tarfile.TarInfo("signature.json"), json.dumps(envelope).encode()),
        ]
    )


def _envelope(bundle: bytes, **change: object) -> bytes:
    envelope = json.loads(_members(bundle)["signature.json"]) | change
    envelope = {k: v for k, v in envelope.items() if v is not None}
    return _rebuild(bundle, signature_json=json.dumps(envelope).encode())


def test_the_serial_is_signed_and_a_bundle_is_reproducible_for_one_serial() -> None:
    bundle = export_bundle(POLICIES, KEY, serial=41)
    assert bundle == export_bundle(list(reversed(POLICIES)), KEY, serial=41)
    assert bundle != export_bundle(POLICIES, KEY, serial=42)
    assert json.loads(_members(bundle)["signature.json"])["serial"] == 41
    verified = verify_bundle(bundle, [OTHER_KEY.public_key(), KEY.public_key()])
    assert (verified.serial, verified.format, verified.key_id) == (41, 2, key_id(KEY.public_key()))
    assert verified.digest == policy_set_digest(POLICIES)
    assert verified.policies == sorted(POLICIES, key=lambda p: p.id)


@pytest.mark.parametrize("serial", [42, 1, None])
def test_a_changed_or_stripped_serial_is_refused_by_the_signature(serial: int | None) -> None:
    # None strips the serial: a v2 bundle passed off as a serial-less v1 one does not verify.
    with pytest.raises(BundleSignatureInvalid):
        verify_bundle(
            _envelope(export_bundle(POLICIES, KEY, serial=41), serial=serial), [KEY.public_key()]
        )


def test_a_v1_signature_given_a_serial_is_refused() -> None:
    with pytest.raises(BundleSignatureInvalid):
        verify_bundle(_envelope(_v1(POLICIES, KEY), serial=99), [KEY.public_key()])


def test_a_v1_bundle_still_verifies_and_has_no_serial() -> None:
    verified = verify_bundle(_v1(POLICIES, KEY), [KEY.public_key()])
    assert (verified.serial, verified.format) == (None, 1)
    assert read_bundle(_v1(POLICIES, KEY), [KEY.public_key()]) == verified.policies


@pytest.mark.parametrize("serial", ["5", 5.0, True, 0, -1, 2**63])
def test_a_serial_that_is_not_a_positive_64_bit_integer_is_refused(serial: object) -> None:
    bundle = _envelope(export_bundle(POLICIES, KEY, serial=5), serial=serial)
    with pytest.raises(BundleFormatError, match="serial"):
        verify_bundle(bundle, [KEY.public_key()])


@pytest.mark.parametrize("serial", [0, -1, 2**63, True])
def test_export_refuses_a_serial_out_of_range(serial: int) -> None:
    with pytest.raises(ValueError, match="serial"):
        export_bundle(POLICIES, KEY, serial=serial)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        ("extra", "unexpected member '../evil'"),
        ("symlink", "is not a regular file"),
        ("duplicate", "appears twice"),
        ("missing", "bundle lacks signature.json"),
        ("garbage", "not a policy bundle"),
        ("bad-digest", "one hex SHA-256 digest"),
    ],
)
def test_malformed_bundles_are_refused_without_touching_the_disk(mutate: str, message: str) -> None:
    members = _members(export_bundle(POLICIES, KEY, serial=1))
    files = [(tarfile.TarInfo(name), members[name]) for name in MEMBERS]
    if mutate == "extra":
        files.append((tarfile.TarInfo("../evil"), b"x"))
    elif mutate == "symlink":
        link = tarfile.TarInfo("signature.json")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        files[2] = (link, b"")
    elif mutate == "duplicate":
        files.append(files[0])
    elif mutate == "missing":
        files = files[:2]
    elif mutate == "bad-digest":
        files[1] = (tarfile.TarInfo("digest.txt"), b"sha256:abc\n")
    data = b"definitely not a tar archive" * 40 if mutate == "garbage" else _tar(files)
    with pytest.raises(BundleFormatError, match=message):
        read_bundle(data, [KEY.public_key()])
