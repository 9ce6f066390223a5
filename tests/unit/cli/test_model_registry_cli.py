"""The runbook's supply chain through the CLI: keys, build, sign, verify, push, promote, approve."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from aegis.audit.models import AuditEntry
from aegis.cli.main import run
from aegis.database.core import Database
from tests.support import factories


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Path:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_JSON", "false")
    monkeypatch.setenv("COSIGN_PASSWORD", "test-password")
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model_dir"
    model.mkdir()
    (model / "params.json").write_text(json.dumps({"w": [1, 2, 3]}))
    return tmp_path


def test_build_sign_push_promote_approve(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    database = Database(db_url)
    requester = factories.user(database, "operator", "approver")
    approver = factories.user(database, "approver")
    database.dispose()
    assert run(["keys", "generate", "--out", str(env / "keys")]) == 0
    pub = str(env / "keys" / "cosign.pub")
    assert (
        run(
            [
                "model",
                "build",
                str(env / "model_dir"),
                "--name",
                "example_multimodal",
                "--version",
                "0.1",
            ]
        )
        == 0
    )
    assert run(["model", "sign", "model.tar.gz", "--key", str(env / "keys" / "cosign.key")]) == 0
    assert run(["model", "verify", "model.tar.gz", "--key", pub]) == 0
    store = (env / "bucket").as_uri() + "/model-archives/example_multimodal/0.1/"
    assert run(["model", "push", "model.tar.gz", "--to", store, "--key", pub]) == 0
    assert (
        env / "bucket" / "model-archives" / "example_multimodal" / "0.1" / "model.tar.gz.sig"
    ).exists()
    assert (
        run(
            [
                "model",
                "promote",
                "example_multimodal",
                "0.1",
                "--to",
                "production",
                "--actor",
                requester,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert run(["model", "approve", "1", "--actor", requester]) == 1  # four eyes
    assert "other than its requester" in capsys.readouterr().err
    assert run(["model", "approve", "1", "--actor", "nobody"]) == 1  # must be a user
    assert run(["model", "approve", "1", "--actor", approver]) == 0
    assert run(["model", "list"]) == 0
    assert "production" in capsys.readouterr().out


def test_push_refuses_an_archive_signed_by_an_untrusted_key(env: Path, db_url: str) -> None:
    run(["keys", "generate", "--out", str(env / "a")])
    run(["keys", "generate", "--out", str(env / "b")])
    run(["model", "build", str(env / "model_dir"), "--name", "m", "--version", "1"])
    run(["model", "sign", "model.tar.gz", "--key", str(env / "a" / "cosign.key")])
    code = run(
        [
            "model",
            "push",
            "model.tar.gz",
            "--to",
            (env / "bucket").as_uri(),
            "--key",
            str(env / "b" / "cosign.pub"),
        ]
    )
    assert code == 1
    assert not (env / "bucket").exists() or not any((env / "bucket").rglob("model.tar.gz"))
    # someone tried to put an archive no trusted key signed into the registry: that is audited
    database = Database(db_url)
    with database.unit_of_work() as session:
        refused = list(
            session.scalars(select(AuditEntry).where(AuditEntry.event_type == "model.push_refused"))
        )
    database.dispose()
    assert [(e.actor, e.outcome) for e in refused] == [(f"cli:{getpass.getuser()}", "refused")]
    assert json.loads(refused[0].data)["reason"] == "signature_invalid"


def test_build_refuses_an_engine_model_under_another_name_or_version(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The engine refuses to load an archive whose model.json names another model or version
    # than the registry's: found at build time, not after a four-eyes promotion to production.
    model = env / "engine_model"
    assert run(["engine", "train", "--out", str(model), "--version", "0.1"]) == 0
    capsys.readouterr()
    argv = ["model", "build", str(model), "--name", "example_multimodal", "--version", "0.2"]
    assert run(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "example_multimodal 0.1, not example_multimodal 0.2" in err
    assert not (env / "model.tar.gz").exists()
    argv[-1] = "0.1"  # as model.json says
    assert run(argv) == 0
    # a directory that is not an engine model is packaged under any name, as before
    other = ["model", "build", str(env / "model_dir"), "--name", "m", "--version", "7"]
    assert run([*other, "--out", str(env / "other.tar.gz")]) == 0


def _m1_pushed_and_m2_signed(env: Path) -> tuple[str, str]:
    """Model m, versions 1 and 2, built and signed; 1 pushed to ``.../model-archives/m/1/``.
    Returns the public key file and that location."""
    run(["keys", "generate", "--out", str(env / "keys")])
    pub, key = str(env / "keys" / "cosign.pub"), str(env / "keys" / "cosign.key")
    store = (env / "bucket").as_uri() + "/model-archives/m/1/"
    for version in ("1", "2"):
        out = f"m-{version}.tar.gz"
        argv = ["model", "build", str(env / "model_dir"), "--name", "m", "--version", version]
        assert run([*argv, "--out", out]) == 0
        assert run(["model", "sign", out, "--key", key]) == 0
    assert run(["model", "push", "m-1.tar.gz", "--to", store, "--key", pub]) == 0
    return pub, store


def test_push_to_the_location_of_another_version_is_refused_and_audited(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Someone pushing over another version's archive (production's, perhaps) is recorded, as
    # an archive that does not verify is.
    pub, store = _m1_pushed_and_m2_signed(env)
    database = Database(db_url)
    factories.user(database, "operator", username="eve")
    capsys.readouterr()
    assert run(["model", "push", "m-2.tar.gz", "--to", store, "--key", pub, "--actor", "eve"]) == 1
    assert "holds model m 1" in capsys.readouterr().err
    with database.unit_of_work() as session:
        refused = list(
            session.scalars(select(AuditEntry).where(AuditEntry.event_type == "model.push_refused"))
        )
    database.dispose()
    assert [(e.actor, e.resource, e.outcome) for e in refused] == [
        ("eve", "archive:m-2.tar.gz", "refused")
    ]
    assert json.loads(refused[0].data)["reason"] == "model_location_taken"


def test_push_to_another_spelling_of_another_versions_location_exits_1_and_keeps_it(
    env: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pub, store = _m1_pushed_and_m2_signed(env)
    stored = env / "bucket" / "model-archives" / "m" / "1" / "model.tar.gz"
    before = stored.read_bytes()
    alias = store.replace("file://", "file://localhost", 1).replace("/m/1/", "/%6D/1/")
    capsys.readouterr()
    assert run(["model", "push", "m-2.tar.gz", "--to", alias, "--key", pub]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "holds model m 1" in err
    assert stored.read_bytes() == before
    database = Database(db_url)
    with database.unit_of_work() as session:
        refused = session.scalars(
            select(AuditEntry).where(AuditEntry.event_type == "model.push_refused")
        ).one()
    database.dispose()
    assert json.loads(refused.data)["reason"] == "model_location_taken"


@pytest.mark.parametrize("actor", ["", "  ", "ops\nroot", "ops\x1b[2J", "a" * 257])
def test_push_refuses_an_actor_that_is_not_a_printable_name_before_anything(
    env: Path, database: Database, actor: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from aegis.registry import catalog
    from aegis.registry import service as registry_service
    from aegis.registry.cosign_keys import generate_private_key, public_key_pem
    from tests.support.releases import MODEL, Releases

    releases = Releases.start(env, database)
    archive = env / "model.tar.gz"
    registry_service.build_archive(env / "model_dir", archive, name=MODEL, version="0.1")
    registry_service.sign_archive(archive, releases.key)
    untrusted = env / "other.pub"
    untrusted.write_bytes(public_key_pem(generate_private_key().public_key()))
    capsys.readouterr()
    for key in (releases.pub, untrusted):  # one that would be pushed, one that would be refused
        argv = ["model", "push", str(archive), "--to", (env / "store").as_uri()]
        assert run([*argv, "--key", str(key), "--actor", actor]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: --actor") and err.count("\n") == 1, err
    assert not (env / "store").exists()
    with database.unit_of_work() as session:
        assert catalog.list_versions(session=session) == []
    assert factories.audit_events(database, "model.push_refused") == []


def _signed_archive(env: Path, database: Database) -> tuple[Path, Path]:
    """A model archive signed by a new key, and that key's public half (trusted with --key)."""
    from aegis.registry import service as registry_service
    from tests.support.releases import MODEL, Releases

    releases = Releases.start(env, database)
    archive = env / "model.tar.gz"
    registry_service.build_archive(env / "model_dir", archive, name=MODEL, version="0.1")
    registry_service.sign_archive(archive, releases.key)
    return archive, releases.pub


def test_push_records_the_named_operator(env: Path, database: Database) -> None:
    from aegis.registry import catalog

    operator = factories.user(database, "operator")
    archive, pub = _signed_archive(env, database)
    argv = ["model", "push", str(archive), "--to", (env / "store").as_uri(), "--key", str(pub)]
    assert run([*argv, "--actor", operator]) == 0
    with database.unit_of_work() as session:
        assert [v.pushed_by for v in catalog.list_versions(session=session)] == [operator]
    assert [e.actor for e in factories.audit_events(database, "model.pushed")] == [operator]


def test_push_without_actor_records_who_ran_it_on_the_machine(
    env: Path, database: Database
) -> None:
    # No user is named (CI and the runbook push before anyone needs one): the OS user is kept.
    from aegis.registry import catalog

    archive, pub = _signed_archive(env, database)
    argv = ["model", "push", str(archive), "--to", (env / "store").as_uri(), "--key", str(pub)]
    assert run(argv) == 0
    with database.unit_of_work() as session:
        assert [v.pushed_by for v in catalog.list_versions(session=session)] == [
            f"cli:{getpass.getuser()}"
        ]


def test_push_without_actor_by_an_os_user_of_no_usable_name_records_the_local_operator(
    env: Path, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # getpass.getuser() takes the name from the environment first: a name of several lines (or
    # none at all, in a container running as a UID without a passwd entry) is no actor.
    from aegis.registry import catalog

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "eve\nmallory")
    archive, pub = _signed_archive(env, database)
    argv = ["model", "push", str(archive), "--to", (env / "store").as_uri(), "--key", str(pub)]
    assert run(argv) == 0
    with database.unit_of_work() as session:
        assert [v.pushed_by for v in catalog.list_versions(session=session)] == [
            "cli:local-operator"
        ]


@pytest.mark.parametrize("who", ["nobody", "approver", "disabled operator"])
def test_push_by_an_actor_who_is_no_enabled_operator_is_refused_and_audited(
    env: Path, database: Database, who: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--actor was recorded as given, so any name (one no user holds, a viewer's) could be
    written as the pusher; it must be an enabled user holding operator, as for promote."""
    from aegis.auth import service as auth_service
    from aegis.registry import catalog

    actor = "nobody"
    if who == "approver":
        actor = factories.user(database, "viewer", "approver")
    elif who == "disabled operator":
        actor = factories.user(database, "operator")
        with database.unit_of_work() as session:
            auth_service.set_disabled(session=session, username=actor, disabled=True, actor="t")
    archive, pub = _signed_archive(env, database)
    capsys.readouterr()
    argv = ["model", "push", str(archive), "--to", (env / "store").as_uri(), "--key", str(pub)]
    assert run([*argv, "--actor", actor]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not (env / "store").exists()
    with database.unit_of_work() as session:
        assert catalog.list_versions(session=session) == []
    assert factories.audit_events(database, "model.pushed") == []
    unknown = who == "nobody"
    event_type = "authentication.failed" if unknown else "access.denied"
    (refused,) = factories.audit_events(database, event_type)
    said = json.loads(refused.data)
    assert (refused.actor, refused.outcome, refused.resource) == (
        actor,
        "denied",
        "aegis model push model.tar.gz",
    )
    assert said["code"] == ("user_not_found" if unknown else "permission_denied")
    assert said["ip"] == "cli"
