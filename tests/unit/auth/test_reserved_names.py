"""The names Aegis writes as the actor of its own records (``ai-engine``, ``policy``, ``system``
…) are no person's: not a local user's, created over the API or the CLI, and not an OIDC
caller's. Otherwise that person's audit records would read as the system's, and their action
requests would pass for the AI engine's (whose rejections are learnt from)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from aegis.actions import service as actions_service
from aegis.audit.models import AuditEntry
from aegis.auth import service
from aegis.auth.schemas import RESERVED_NAMES
from aegis.backend_app import create_app
from aegis.cli.main import run
from aegis.core.config import Settings
from aegis.database.core import Database
from aegis.incidents import recommendations
from tests.support import factories
from tests.support.oidc_provider import Provider

# each reserved name, and spellings that read the same in an audit log
SPELLINGS = [*sorted(RESERVED_NAMES), "AI-Engine", "SYSTEM", "Policy"]


def _users(database: Database) -> list[str]:
    with database.unit_of_work() as session:
        return [user.username for user in service.list_users(session=session)]


@pytest.mark.parametrize("name", SPELLINGS)
def test_the_api_refuses_a_reserved_username_in_one_line(
    client: TestClient, database: Database, name: str
) -> None:
    admin = factories.signed_in(client, database, "admin")

    response = client.post(
        "/api/v1/users",
        json={"username": name, "password": "a-long-password-123", "roles": ["admin"]},
        headers=admin,
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "username_reserved"
    assert error["message"] == (
        f"the username {name!r} is reserved: Aegis records its own services under it"
    )
    assert name not in _users(database)
    created = factories.audit_events(database, "user.created")
    assert all(event.resource != f"user:{name}" for event in created)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> None:
    monkeypatch.setenv("AEGIS_DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_JSON", "false")


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("name", ["ai-engine", "Executor"])
def test_the_cli_refuses_a_reserved_username_with_one_line_and_exit_1(
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password-123\n"))

    assert run(["user", "create", name, "--role", "admin", "--password-stdin"]) == 1

    err = capsys.readouterr().err
    assert err == (
        f"error: the username {name!r} is reserved: Aegis records its own services under it\n"
    )
    assert name not in _users(database)


def test_the_first_admin_is_still_created_for_aegis_up(database: Database) -> None:
    created = service.ensure_first_admin(database=database)

    assert created is not None and created[0] == "admin"
    assert _users(database) == ["admin"]


def test_every_actor_the_code_names_for_itself_is_reserved() -> None:
    """The constants the code writes as actors: a new one must join RESERVED_NAMES."""
    from aegis.auth.schemas import is_reserved
    from aegis.cli import runtime as cli_runtime

    own = [
        actions_service.AI_ENGINE,
        recommendations.ENGINE_ACTOR.name,
        recommendations.SAFETY_SCREEN,
        cli_runtime.LOCAL_OPERATOR,
    ]

    assert all(is_reserved(name) for name in own)


# --- OIDC -------------------------------------------------------------------------------------


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    yield p
    p.close()


@pytest.mark.parametrize(
    "subject",
    ["ai-engine", "AI-Engine", "system", "\uff53\uff59\uff53\uff54\uff45\uff4d", "system:aegis-up"],
    ids=["ai-engine", "AI-Engine", "system", "fullwidth system", "system:aegis-up"],
)
def test_an_oidc_subject_naming_an_aegis_service_is_401_and_requests_nothing(
    provider: Provider,
    db_url: str,
    database: Database,
    make_settings: Callable[..., Settings],
    subject: str,
) -> None:
    """An identity provider's ``sub`` is the caller's name: one equal to the AI engine's would
    put an operator's action request down as the engine's."""
    settings = make_settings(
        database_url=db_url,
        oidc_issuer=provider.issuer,
        oidc_audience="aegis",
        oidc_role_map={"sre-oncall": ["operator"]},
    )
    token = provider.token(provider.add_key(), sub=subject)
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/api/v1/actions",
            json={
                "action": "scale_deployment",
                "namespace": "demo",
                "name": "web",
                "params": {"replicas": 5},
                "idempotency_key": "as-the-engine-1",
                "reason": "load",
            },
            headers={"Authorization": f"Bearer {token}"},
        )

    assert response.status_code == 401
    assert response.json()["error"]["message"] == (
        "token subject is a name Aegis reserves for its own services"
    )
    assert factories.audit_events(database, "authentication.failed")[-1].actor == "anonymous"
    with database.unit_of_work() as session:
        requested = session.scalars(
            select(AuditEntry.event_type).where(AuditEntry.category == "action")
        ).all()
    assert requested == []
