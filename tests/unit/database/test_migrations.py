"""The schema exists only through Alembic, and the migrations match the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from aegis.cli.main import run
from aegis.database import migrate
from aegis.database.core import Database, make_engine
from aegis.database.models import metadata
from tests.support import services
from tests.support.processes import clean_env


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
