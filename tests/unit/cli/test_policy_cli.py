"""`aegis policy sync|export|apply|replay` and `aegis executor disable|enable` via the CLI."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from aegis.actions import service as actions_service
from aegis.actions.schemas import ActionCreate
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
    assert run(["policy", "export", "--out", str(bundle)]) == 0
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
