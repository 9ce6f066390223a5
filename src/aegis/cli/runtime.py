"""Start-up steps the commands share: settings, logging, waiting for and migrating the database."""

from __future__ import annotations

from sqlalchemy.orm import Session

from aegis.core.config import Settings, load_settings
from aegis.core.logging import configure_logging
from aegis.database.core import Database, wait_for_database


def settings_for(service: str = "cli", **overrides: object) -> Settings:
    settings = load_settings(service, **overrides)
    configure_logging(level=settings.log_level, json_output=settings.log_json, service=service)
    return settings


def open_database(settings: Settings | None = None) -> tuple[Settings, Database]:
    settings = settings or settings_for()
    database = Database(settings.effective_database_url)
    wait_for_database(database.engine, timeout_s=settings.database_connect_timeout_s)
    return settings, database


def prepare_database(
    settings: Settings | None = None, *, revision: str = "heads"
) -> tuple[Settings, Database]:
    from aegis.database import migrate

    settings, database = open_database(settings)
    try:
        migrate.upgrade(database.engine, revision)
    except BaseException:
        database.dispose()
        raise
    return settings, database


def require_role(session: Session, username: str, role: str) -> None:
    """The CLI's ``--actor`` names an enabled user holding ``role`` (or admin): the rule the API
    applies to its caller, so that a name no user holds (``"bob "``, ``"Bob"``) never passes
    four eyes."""
    from aegis.auth import service as auth_service
    from aegis.core.errors import Forbidden

    user = auth_service.get_user(session=session, username=username)
    if user.disabled or not ({role, "admin"} & set(user.roles)):
        raise Forbidden(f"{username} does not hold the {role} role")
