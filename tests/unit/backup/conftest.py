"""Backup fixtures: a database seeded through the real services (once per backend and worker,
then cloned per test), and empty restore targets of either backend."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from aegis.core.config import Settings
from aegis.database.core import Database
from tests.conftest import _template_for
from tests.support import services
from tests.unit.backup.support import KEY, build_settings, seed


@pytest.fixture(scope="session")
def _seeded_templates() -> Iterator[dict[str, Any]]:
    """Per backend, a migrated database seeded once per worker (password hashing is slow)."""
    made: dict[str, Any] = {}
    yield made
    if "postgresql" in made:
        services.drop_pg_database(made["postgresql"])


def _seeded_template(
    backend: str,
    seeded: dict[str, Any],
    templates: dict[str, Any],
    factory: pytest.TempPathFactory,
    tag: str,
) -> Any:
    if backend in seeded:
        return seeded[backend]
    base = factory.getbasetemp() / "backup-seed"
    made: Path | str
    migrated = _template_for(backend, templates, factory.getbasetemp() / "templates", tag)
    if backend == "sqlite":
        base.mkdir(parents=True, exist_ok=True)
        path = base / "seeded.db"
        shutil.copyfile(migrated, path)
        url, made = f"sqlite+pysqlite:///{path}", path
    else:
        name = f"aegis_seed_{tag}"
        services.create_pg_database(name, template=migrated)
        url, made = services.pg_url(name), name
    database = Database(url)
    try:
        seed(database, build_settings(base / "data"))
    finally:
        database.dispose()
    seeded[backend] = made
    return made


@pytest.fixture
def source_url(
    db_backend: str,
    _seeded_templates: dict[str, Any],
    _templates: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    worker_tag: str,
    tmp_path: Path,
) -> Iterator[str]:
    """A database of the parametrised backend holding the :func:`seed` rows, private to the
    test."""
    template = _seeded_template(
        db_backend, _seeded_templates, _templates, tmp_path_factory, worker_tag
    )
    yield from services.fresh_database(db_backend, template, tmp_path)


@pytest.fixture
def settings(source_url: str, tmp_path: Path) -> Settings:
    return build_settings(
        tmp_path / "data", database_url=source_url, backup_dir=tmp_path / "backups"
    )


@pytest.fixture
def encrypted_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"backup_encryption_key": SecretStr(KEY)})


def _migrated(
    backend: str, templates: dict[str, Any], factory: pytest.TempPathFactory, tag: str
) -> Any:
    return _template_for(backend, templates, factory.getbasetemp() / "templates", tag)


@pytest.fixture
def target_url(
    db_backend: str,
    _templates: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    worker_tag: str,
    tmp_path: Path,
) -> Iterator[str]:
    """An empty, migrated database of the same backend as ``source_url``."""
    template = _migrated(db_backend, _templates, tmp_path_factory, worker_tag)
    yield from services.fresh_database(db_backend, template, tmp_path)


@pytest.fixture
def bare_url(db_backend: str, tmp_path: Path) -> Iterator[str]:
    """A brand-new database with no schema at all, same backend as ``source_url``."""
    yield from services.fresh_database(db_backend, None, tmp_path)


@pytest.fixture
def other_backend_url(
    db_backend: str,
    request: pytest.FixtureRequest,
    _templates: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    worker_tag: str,
    tmp_path: Path,
) -> Iterator[str]:
    """An empty, migrated database of the OTHER backend (PostgreSQL for a SQLite source)."""
    request.getfixturevalue("pg_admin_url")
    other = "postgresql" if db_backend == "sqlite" else "sqlite"
    template = _migrated(other, _templates, tmp_path_factory, worker_tag)
    yield from services.fresh_database(other, template, tmp_path)
