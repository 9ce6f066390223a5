"""`aegis policy sync|export|apply|replay` and `aegis executor disable|enable` via the CLI."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import select

from aegis.actions import service as actions_service
from aegis.actions.schemas import ActionCreate
from aegis.audit import keys
from aegis.audit.models import AuditEntry
from aegis.auth.schemas import Actor
from aegis.cli.main import run
from aegis.core.config import load_settings
from aegis.database.core import Database
from aegis.policy import service as policy_service
from aegis.policy.errors import DuplicatePolicy
from aegis.policy.loader import parse_policies

ALLOW = """
id: demo-restarts
effect: allow
subjects: ["role:operator"]
actions: ["restart_deployment"]
resources: {namespaces: ["demo"], names: ["*"]}
"""
DENY = """
id: demo-freeze
effect: deny
subjects: ["*"]
actions: ["*"]
resources: {namespaces: ["demo"], names: ["*"]}
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_JSON", "false")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "allow.yaml").write_text(ALLOW)
    return tmp_path


def _active(db_url: str) -> list[str]:
    database = Database(db_url)
    with database.unit_of_work() as session:
        ids = [p.id for p in policy_service.active_policies(session=session)]
    database.dispose()
    return ids


def test_sync_shows_the_diff_and_makes_the_set_equal_the_folder(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["policy", "sync", str(env / "policies"), "--dry-run"]) == 0
    assert "+ demo-restarts (added)" in capsys.readouterr().out
    assert _active(db_url) == []
    assert run(["policy", "sync", str(env / "policies"), "--yes"]) == 0
    assert _active(db_url) == ["demo-restarts"]
    (env / "policies" / "allow.yaml").unlink()
    (env / "policies" / "deny.yaml").write_text(DENY)
    assert run(["policy", "sync", str(env / "policies"), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "- demo-restarts (removed)" in out and "+ demo-freeze (added)" in out
    assert _active(db_url) == ["demo-freeze"]


def test_sync_refuses_an_id_given_in_two_files_and_changes_nothing(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Which one would win depends on file names; neither may be applied silently.
    (env / "policies" / "zz-override.yaml").write_text(
        ALLOW.replace("effect: allow", "effect: deny")
    )
    for mode in ("--dry-run", "--yes"):
        assert run(["policy", "sync", str(env / "policies"), mode]) == 1
        err = capsys.readouterr().err
        assert "'demo-restarts' appears twice" in err and len(err.strip().splitlines()) == 1
    assert _active(db_url) == []


def test_the_service_refuses_a_set_that_gives_an_id_twice(db_url: str) -> None:
    # Bundles and the CLI check before; this holds for any other caller of the service.
    twice = [
        *parse_policies(ALLOW.encode()),
        *parse_policies(ALLOW.replace("allow", "deny").encode()),
    ]
    database = Database(db_url)
    try:
        for call in (policy_service.plan, policy_service.replace_all):
            with pytest.raises(DuplicatePolicy), database.unit_of_work() as session:
                kwargs = {"actor": "test"} if call is policy_service.replace_all else {}
                call(session=session, policies=twice, **kwargs)
    finally:
        database.dispose()
    assert _active(db_url) == []


def test_bad_policy_file_names_file_line_and_field(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (env / "policies" / "bad.yaml").write_text(
        ALLOW.replace("effect: allow", "effect: maybe").replace("demo-restarts", "bad")
    )
    assert run(["policy", "sync", str(env / "policies"), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "effect" in err


def test_export_then_apply_round_trips_and_tampering_is_refused(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["policy", "sync", str(env / "policies"), "--yes"])
    bundle = env / "bundle.tar"
    assert run(["policy", "export", "--serial", "1", "--out", str(bundle)]) == 0
    run(["policy", "sync", str(env / "policies"), "--yes"])
    (env / "policies" / "allow.yaml").unlink()
    run(["policy", "sync", str(env / "policies"), "--yes"])
    assert _active(db_url) == []
    assert run(["policy", "apply", str(bundle), "--yes"]) == 0
    assert _active(db_url) == ["demo-restarts"]

    # flip one byte inside policies.json: the digest and signature no longer match
    with tarfile.open(bundle) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    members["policies.json"] = members["policies.json"].replace(b"demo", b"prod")
    forged = env / "forged.tar"
    with tarfile.open(forged, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    capsys.readouterr()
    assert run(["policy", "apply", str(forged), "--yes"]) == 1
    assert "error:" in capsys.readouterr().err


def _export(env: Path, serial: int, *policy_texts: str) -> Path:
    """A bundle of exactly ``policy_texts`` (synced first), signed with ``serial``."""
    for old in (env / "policies").iterdir():
        old.unlink()
    for i, text in enumerate(policy_texts):
        (env / "policies" / f"{i}.yaml").write_text(text)
    assert run(["policy", "sync", str(env / "policies"), "--yes"]) == 0
    bundle = env / f"bundle-{serial}.tar"
    assert run(["policy", "export", "--serial", str(serial), "--out", str(bundle)]) == 0
    return bundle


def _bundle_events(db_url: str) -> list[tuple[str, str, dict[str, object]]]:
    database = Database(db_url)
    with database.unit_of_work() as session:
        rows = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.event_type.like("policy.bundle%"))
            .order_by(AuditEntry.seq)
        )
        events = [(e.event_type, e.outcome, json.loads(e.data)) for e in rows]
    database.dispose()
    return events


def test_an_older_bundle_is_refused_as_a_rollback_and_the_refusal_is_audited(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lax = _export(env, 2, ALLOW)
    strict = _export(env, 3, DENY)
    assert run(["policy", "apply", str(strict), "--yes"]) == 0
    capsys.readouterr()
    assert run(["policy", "apply", str(lax), "--yes"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "serial 2" in err and "3" in err and "--allow-rollback" in err
    assert _active(db_url) == ["demo-freeze"]
    (applied, _, _), refused = _bundle_events(db_url)
    assert applied == "policy.bundle_applied"
    assert refused[:2] == ("policy.bundle_refused", "refused")
    assert refused[2]["serial"] == 2 and refused[2]["highest_applied_serial"] == 3
    assert refused[2]["reason"] == "bundle_rollback"


def test_the_same_serial_is_not_applied_twice(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    strict = _export(env, 5, DENY)
    assert run(["policy", "apply", str(strict), "--yes"]) == 0
    capsys.readouterr()
    assert run(["policy", "apply", str(strict), "--yes"]) == 1
    assert "serial 5" in capsys.readouterr().err
    assert [e[0] for e in _bundle_events(db_url)] == [
        "policy.bundle_applied",
        "policy.bundle_refused",
    ]


def test_a_newer_bundle_applies_and_raises_the_highest_serial(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _export(env, 1, ALLOW)
    second = _export(env, 7, DENY)
    third = _export(env, 8, ALLOW)
    assert run(["policy", "apply", str(first), "--yes"]) == 0
    assert run(["policy", "apply", str(second), "--yes"]) == 0
    assert _active(db_url) == ["demo-freeze"]
    assert run(["policy", "apply", str(third), "--yes"]) == 0
    assert _active(db_url) == ["demo-restarts"]
    events = _bundle_events(db_url)
    assert [(t, e["serial"], e["highest_applied_serial"]) for t, _, e in events] == [
        ("policy.bundle_applied", 1, 0),
        ("policy.bundle_applied", 7, 1),
        ("policy.bundle_applied", 8, 7),
    ]
    # bundle 7 is older than 8 now, though applying it would change the set
    assert run(["policy", "apply", str(second), "--yes"]) == 1


def test_a_bundle_with_no_changes_still_raises_the_highest_serial(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The active set already equals bundle 4 (synced); applying it must still make bundle 3,
    # a laxer one, a rollback.
    lax = _export(env, 3, ALLOW)
    current = _export(env, 4, DENY)
    assert run(["policy", "apply", str(current), "--yes"]) == 0
    assert "no changes" in capsys.readouterr().out
    assert run(["policy", "apply", str(lax), "--yes"]) == 1
    assert _active(db_url) == ["demo-freeze"]


def test_allow_rollback_applies_an_older_bundle_audited_and_keeps_the_highest_serial(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lax = _export(env, 2, ALLOW)
    strict = _export(env, 3, DENY)
    assert run(["policy", "apply", str(strict), "--yes"]) == 0
    assert run(["policy", "apply", str(lax), "--yes", "--allow-rollback"]) == 0
    assert _active(db_url) == ["demo-restarts"]
    forced = _bundle_events(db_url)[-1]
    assert forced[:2] == ("policy.bundle_rollback_forced", "ok")
    assert forced[2]["serial"] == 2 and forced[2]["highest_applied_serial"] == 3
    # the override was for one apply: the high-water mark stays 3
    capsys.readouterr()
    assert run(["policy", "apply", str(lax), "--yes"]) == 1
    assert "serial 2" in capsys.readouterr().err


def _v1_bundle(env: Path, text: str) -> Path:
    """A bundle as Aegis wrote it before serials (format v1): no serial, v1 signed message."""
    current = _export(env, 1, text)
    with tarfile.open(current) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    digest = members["digest.txt"].decode().strip()
    key = keys.load_or_create_private_key(env / "data" / "keys" / "audit-signing.key")
    envelope = json.loads(members["signature.json"])
    del envelope["serial"]
    signature = key.sign(b"aegis-policy-bundle/v1\n" + digest.encode())
    envelope["signature"] = base64.b64encode(signature).decode()
    members["signature.json"] = json.dumps(envelope, sort_keys=True).encode() + b"\n"
    old = env / "v1.tar"
    with tarfile.open(old, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("policies.json", "digest.txt", "signature.json"):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    return old


def test_a_serial_less_v1_bundle_is_applied_only_with_allow_rollback(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _v1_bundle(env, ALLOW)
    _export(env, 9, DENY)  # leaves the active set strict
    capsys.readouterr()
    assert run(["policy", "apply", str(old), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "no serial" in err and "--allow-rollback" in err
    assert _active(db_url) == ["demo-freeze"]
    assert run(["policy", "apply", str(old), "--yes", "--allow-rollback"]) == 0
    assert _active(db_url) == ["demo-restarts"]
    (refused, _, why), (forced, _, data) = _bundle_events(db_url)
    assert (refused, why["serial"], why["reason"]) == (
        "policy.bundle_refused",
        None,
        "bundle_rollback",
    )
    assert (forced, data["serial"], data["format"]) == ("policy.bundle_rollback_forced", None, 1)


def _rewritten(bundle: Path, out: Path, **members: bytes) -> Path:
    """``bundle`` with some members' bytes replaced, re-packed as ``out``."""
    with tarfile.open(bundle) as tar:
        held = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    held |= {name.replace("_", "."): data for name, data in members.items()}
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("policies.json", "digest.txt", "signature.json"):
            info = tarfile.TarInfo(name)
            info.size = len(held[name])
            tar.addfile(info, io.BytesIO(held[name]))
    return out


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        ("digest", "bundle_digest_mismatch"),
        ("signature", "bundle_signature_invalid"),
        ("format", "bundle_format_invalid"),
    ],
)
def test_a_bundle_refused_by_its_signature_digest_or_format_is_audited_and_changes_nothing(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str], forge: str, reason: str
) -> None:
    good = _export(env, 4, DENY)
    assert run(["policy", "apply", str(good), "--yes"]) == 0
    with tarfile.open(good) as tar:
        body = tar.extractfile("policies.json").read()  # type: ignore[union-attr]
        envelope = json.loads(tar.extractfile("signature.json").read())  # type: ignore[union-attr]
    if forge == "digest":  # policies changed under the signed digest
        bad = _rewritten(good, env / "bad.tar", policies_json=body.replace(b"deny", b"allow"))
    elif forge == "signature":  # a higher serial the signature does not cover
        envelope["serial"] = 99
        signed = json.dumps(envelope, sort_keys=True).encode() + b"\n"
        bad = _rewritten(good, env / "bad.tar", signature_json=signed)
    else:
        bad = env / "bad.tar"
        bad.write_bytes(b"not a tar archive")
    capsys.readouterr()
    assert run(["policy", "apply", str(bad), "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert _active(db_url) == ["demo-freeze"]
    events = _bundle_events(db_url)
    assert [e[0] for e in events] == ["policy.bundle_applied", "policy.bundle_refused"]
    _, outcome, data = events[-1]
    assert (outcome, data["reason"]) == ("refused", reason)
    assert data["file_sha256"] == hashlib.sha256(bad.read_bytes()).hexdigest()
    # nothing from the refused bundle was recorded: the highest serial applied is still 4
    assert run(["policy", "apply", str(good), "--yes"]) == 1
    assert "serial 4" in capsys.readouterr().err


def test_export_needs_a_positive_serial(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["policy", "export", "--out", str(env / "b.tar")]) != 0
    for bad in ("0", "-1", str(2**63)):
        assert run(["policy", "export", "--serial", bad, "--out", str(env / "b.tar")]) != 0
    assert not (env / "b.tar").exists()


def test_export_to_a_folder_is_refused_naming_it(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An --out ending in / names a folder: refused in one line, never a file named like it."""
    target = env / "bundles"
    assert run(["policy", "export", "--serial", "1", "--out", f"{target}/"]) == 1
    assert capsys.readouterr().err == (
        f"error: --out {target}/ ends with /, a folder: it must name the bundle file\n"
    )
    assert not target.exists()


def test_replay_reports_decisions_a_candidate_set_would_change(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["policy", "sync", str(env / "policies"), "--yes"])
    database = Database(db_url)
    settings = load_settings(_env_file=None, data_dir=env / "data", database_url=db_url)
    with database.unit_of_work() as session:
        request, _ = actions_service.request_action(
            session=session,
            settings=settings,
            actor=Actor("olga", frozenset({"operator"})),
            body=ActionCreate(
                action="restart_deployment", namespace="demo", name="web", idempotency_key="r1"
            ),
        )
        assert request.decision == "allow"
    database.dispose()
    candidate = env / "candidate"
    candidate.mkdir()
    (candidate / "deny.yaml").write_text(DENY)
    capsys.readouterr()
    assert run(["policy", "replay", "--since", "1d", "--policies", str(candidate)]) == 0
    out = capsys.readouterr().out
    assert "1 requests replayed, 1 decisions would change" in out
    assert "deny" in out


def test_executor_kill_switch_commands(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["executor", "disable"]) == 0
    assert run(["executor", "status"]) == 0
    assert capsys.readouterr().out.strip().endswith("disabled")
    assert run(["executor", "enable"]) == 0
    assert run(["executor", "status"]) == 0
    assert capsys.readouterr().out.strip().endswith("enabled")


def test_executor_disable_says_it_stops_the_backends_dispatch_not_the_executor(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["executor", "disable"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert run(["executor", "disable", "--help"]) == 0
    helped = " ".join(capsys.readouterr().out.split())

    for text in (said, helped):
        assert "nothing will be executed" not in text
        assert "the executor itself still runs signed requests" in text
        assert "EXECUTOR_ENABLED=false on the executor" in text
        assert "--replicas=0" in text


def test_replay_since_the_beginning_of_time_replays_everything(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["policy", "sync", str(env / "policies"), "--yes"])
    capsys.readouterr()
    assert run(["policy", "replay", "--since", "999999999d"]) == 0
    assert "0 requests replayed" in capsys.readouterr().out
