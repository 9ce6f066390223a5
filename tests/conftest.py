"""Shared fixtures: settings built explicitly, real databases from real migrations.

Every test that touches the database takes the ``db_url`` fixture, which is parametrised over
SQLite and PostgreSQL. Each test gets its own freshly migrated database, cloned from a template
that ran the Alembic migrations once per worker (``CREATE DATABASE ... TEMPLATE`` on PostgreSQL,
a file copy on SQLite), so tests never see each other's rows.

PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are the machine's real services. When one
is missing the tests that need it skip with one line saying why — except under ``CI=true``,
where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from aegis.core.config import Settings
from aegis.database import migrate
from aegis.database.core import Database, make_engine
from tests.support import services

IN_CI = os.environ.get("CI") == "true"


def require(condition: bool, why: str) -> None:
    """Skip outside CI, fail inside CI, when a prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and a prerequisite is missing: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def worker_tag(worker_id: str) -> str:
    return f"{worker_id}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = services.PG_ADMIN_URL
    require(services.postgres_up(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    require(services.redis_up(), "Redis is not reachable at 127.0.0.1:6379")
    return services.REDIS_URL


@pytest.fixture(scope="session")
def _templates(
    tmp_path_factory: pytest.TempPathFactory, worker_tag: str
) -> Iterator[dict[str, Any]]:
    """Migrated template databases, created lazily per backend, dropped at the end."""
    made: dict[str, Any] = {}
    yield made
    if "postgresql" in made:
        services.drop_pg_database(made["postgresql"])


def _template_for(backend: str, templates: dict[str, Any], tmp_root: Path, tag: str) -> Any:
    if backend in templates:
        return templates[backend]
    if backend == "sqlite":
        tmp_root.mkdir(parents=True, exist_ok=True)
        path = tmp_root / "template.db"
        engine = make_engine(f"sqlite+pysqlite:///{path}")
        migrate.upgrade(engine)
        engine.dispose()
        templates[backend] = path
    else:
        name = f"aegis_tmpl_{tag}"
        services.create_pg_database(name)
        engine = make_engine(services.pg_url(name))
        migrate.upgrade(engine)
        engine.dispose()
        templates[backend] = name
    return templates[backend]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_admin_url")
    return str(request.param)


@pytest.fixture
def db_url(
    db_backend: str,
    _templates: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    worker_tag: str,
    tmp_path: Path,
) -> Iterator[str]:
    """A freshly migrated database of the parametrised backend, private to this test."""
    template = _template_for(
        db_backend, _templates, tmp_path_factory.getbasetemp() / "templates", worker_tag
    )
    yield from services.fresh_database(db_backend, template, tmp_path)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url)
    yield db
    db.dispose()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings built explicitly (never from the test process's environment)."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "log_json": True,
            "jwt_secret": SecretStr("test-jwt-secret-" + "a" * 32),
            "jwt_refresh_secret": SecretStr("test-refresh-secret-" + "b" * 32),
            "executor_hmac_secret": SecretStr("test-hmac-secret-" + "c" * 32),
            "api_key": SecretStr("test-api-key-" + "d" * 32),
            "alert_webhook_token": SecretStr("test-webhook-token-" + "e" * 32),
            "ai_engine_enabled": False,
            "background_jobs": False,
        }
        values.update(overrides)
        (tmp_path / "data").mkdir(exist_ok=True)
        return Settings(_env_file=None, **values)

    return build
