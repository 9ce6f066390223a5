"""Small builders for test data, one function per thing, using the real services."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from aegis.audit.models import AuditEntry
from aegis.auth import service as auth_service
from aegis.database.core import Database

PASSWORD = "correct-horse-battery-staple"


def user(
    database: Database, *roles: str, username: str | None = None, password: str = PASSWORD
) -> str:
    name = username or f"u{uuid.uuid4().hex[:8]}"
    with database.unit_of_work() as session:
        auth_service.create_user(
            session=session,
            username=name,
            password=password,
            roles=list(roles) or ["viewer"],
            actor="test",
        )
    return name


def login(client: httpx.Client, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def signed_in(client: httpx.Client, database: Database, *roles: str) -> dict[str, str]:
    """The headers of a new user holding ``roles``, logged in."""
    return bearer(login(client, user(database, *roles)))


def audit_events(database: Database, event_type: str) -> list[AuditEntry]:
    """The audit entries of one event type, oldest first."""
    with database.unit_of_work() as session:
        query = select(AuditEntry).where(AuditEntry.event_type == event_type)
        return list(session.scalars(query.order_by(AuditEntry.seq)))
