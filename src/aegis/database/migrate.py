"""Alembic, driven from code: the only way Aegis creates or changes its schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock key held by a migration (``migrations/env.py``): the bytes "AEGISMIG" as
# a signed 64-bit integer.
MIGRATION_LOCK_KEY = int.from_bytes(b"AEGISMIG", "big", signed=True)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)
