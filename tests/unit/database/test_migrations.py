"""The schema exists only through Alembic, and the migrations match the models."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import IntegrityError

from aegis.cli.main import run
from aegis.core.config import Settings
from aegis.database import migrate
from aegis.database.core import Database, make_engine
from aegis.database.models import metadata
from aegis.registry.loader import fetch_and_prepare_model_for_load
from tests.support import services
from tests.support.processes import clean_env
from tests.support.releases import MODEL, Releases


def test_migrations_create_every_table_the_models_declare(database: Database) -> None:
    tables = set(inspect(database.engine).get_table_names())
    assert set(metadata.tables) <= tables


def test_models_and_migrations_do_not_drift(database: Database) -> None:
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(database: Database) -> None:
    migrate.downgrade(database.engine, "base")
    assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(database.engine)
    assert set(metadata.tables) <= set(inspect(database.engine).get_table_names())


def test_services_starting_together_migrate_a_new_database_once(
    pg_admin_url: str, worker_tag: str, tmp_path: Path
) -> None:
    # Every Aegis process migrates at start-up, so replicas starting together on a new
    # PostgreSQL database race to create the same tables; the migration lock lets one do it and
    # the others find the schema current.
    name = f"aegis_migrate_race_{worker_tag}"
    services.create_pg_database(name)
    env = clean_env(DATABASE_URL=services.pg_url(name), AEGIS_DATA_DIR=str(tmp_path / "data"))
    try:
        starts = [
            subprocess.Popen(
                [sys.executable, "-m", "aegis", "db", "upgrade"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=120)[0] for p in starts]
        engine = make_engine(services.pg_url(name))
        heads = set(ScriptDirectory.from_config(migrate.alembic_config(engine)).get_heads())
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            stored = list(versions)
            tables = set(inspect(conn).get_table_names())
        engine.dispose()
    finally:
        services.drop_pg_database(name)

    assert [p.returncode for p in starts] == [0] * 4, outputs
    assert sorted(stored) == sorted(heads)  # each head once
    assert set(metadata.tables) <= tables


def test_a_database_of_another_application_is_not_migrated(
    db_backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # DATABASE_URL pointing at some other application's database: stop, add nothing.
    for url in services.fresh_database(db_backend, None, tmp_path):
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT)"))
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
        for command in (["user", "list"], ["db", "upgrade"]):
            assert run(command) == 1
            err = capsys.readouterr().err
            assert "not Aegis's (customer)" in err and err.count("\n") == 1
        assert inspect(engine).get_table_names() == ["customer"]
        with pytest.raises(migrate.ForeignDatabase):
            migrate.upgrade(engine)
        engine.dispose()


def test_db_upgrade_and_downgrade_say_the_revision_the_database_is_at(
    database: Database,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aegis.backup.snapshot import known_heads
    from aegis.cli.main import run

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "data"))
    heads = sorted(known_heads())  # one per branch of the migrations
    assert run(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"is at revision {', '.join(heads)}")
    assert run(["db", "downgrade", "base"]) == 0
    assert capsys.readouterr().out.strip().endswith("is at revision base (no Aegis tables)")
    assert run(["db", "upgrade"]) == 0
    assert migrate.current(database.engine) == heads


def _insert_version(conn: Connection, version: str, archive_uri: str) -> None:
    conn.execute(
        text(
            "INSERT INTO model_versions (name, version, archive_uri, signature_uri, digest, size, "
            "signer_key_id, manifest, stage, pushed_by) VALUES ('example_multimodal', :v, :uri, "
            ":sig, 'ab', 1, 'k', '{}', 'staging', 'ci')"
        ),
        {"v": version, "uri": archive_uri, "sig": f"{archive_uri}.sig"},
    )


def test_versions_sharing_an_archive_leave_it_to_the_newest(database: Database) -> None:
    # Rows recorded before archive_uri was unique may share one (pushes before the location
    # check, or two at once): the newest keeps it, the older get a fragment.
    shared, own = "file:///store/m/0.1/model.tar.gz", "file:///store/m/0.3/model.tar.gz"
    migrate.downgrade(database.engine, "0011")
    with database.engine.begin() as conn:
        for version, uri in (("0.1", shared), ("0.2", shared), ("0.3", own), ("0.4", shared)):
            _insert_version(conn, version, uri)
    migrate.upgrade(database.engine)
    with database.engine.begin() as conn:
        rows = conn.execute(text("SELECT version, archive_uri FROM model_versions")).all()
        stored = {str(version): str(uri) for version, uri in rows}
    assert stored == {
        "0.1": f"{shared}#superseded-1",
        "0.2": f"{shared}#superseded-2",
        "0.3": own,
        "0.4": shared,
    }
    with pytest.raises(IntegrityError), database.engine.begin() as conn:
        conn.execute(
            text("UPDATE model_versions SET archive_uri = :uri WHERE version = '0.3'"),
            {"uri": shared},
        )


def test_a_version_whose_archive_uri_was_superseded_still_loads(
    database: Database, tmp_path: Path, make_settings: Callable[..., Settings], db_url: str
) -> None:
    releases = Releases.start(tmp_path, database)
    releases.release("0.1")  # in production; a later row then recorded its archive URI too
    with database.engine.begin() as conn:
        uri = conn.execute(text("SELECT archive_uri FROM model_versions")).scalar_one()
    migrate.downgrade(database.engine, "0011")
    with database.engine.begin() as conn:
        _insert_version(conn, "0.2", uri)
    migrate.upgrade(database.engine)
    with database.engine.begin() as conn:
        rows = conn.execute(text("SELECT version, archive_uri FROM model_versions")).all()
        stored = {str(version): str(uri) for version, uri in rows}
    assert stored == {"0.1": f"{uri}#superseded-1", "0.2": uri}
    settings = make_settings(database_url=db_url, trusted_keys=str(releases.pub))
    prepared = fetch_and_prepare_model_for_load(MODEL, settings=settings, database=database)
    assert prepared.version == "0.1"
