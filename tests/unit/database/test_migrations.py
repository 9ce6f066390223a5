"""The schema exists only through Alembic, and the migrations match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from aegis.database import migrate
from aegis.database.core import Database
from aegis.database.models import metadata


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
