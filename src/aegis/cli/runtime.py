"""Start-up steps the commands share: settings, logging, waiting for and migrating the database.

A command that writes to the database migrates it first (:func:`prepare_database`); one that only
reads never changes the schema (:func:`open_current_database`): it refuses a database that is not
at this Aegis's revision, saying to run ``aegis db upgrade``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from aegis.core.config import Settings, load_settings
from aegis.core.errors import AegisError
from aegis.core.logging import configure_logging
from aegis.database.core import Database, wait_for_database


def settings_for(service: str = "cli", **overrides: object) -> Settings:
    settings = load_settings(service, **overrides)
    configure_logging(level=settings.log_level, json_output=settings.log_json, service=service)
    return settings


def open_database(settings: Settings | None = None) -> tuple[Settings, Database]:
    from sqlalchemy import event

    settings = settings or settings_for()
    database = Database(settings.effective_database_url)
    event.listen(database.sessions, "before_flush", _hold_to_column_lengths)
    wait_for_database(database.engine, timeout_s=settings.database_connect_timeout_s)
    return settings, database


def _hold_to_column_lengths(session: Session, _context: object, _instances: object) -> None:
    """Refuse text longer than its ``String(n)`` column, whatever the backend: SQLite stores it
    and PostgreSQL fails mid-command with a driver error, so a command's free text (a comment,
    an actor) gets the same one line on both, before anything is written."""
    from sqlalchemy import String, inspect

    for obj in (*session.new, *session.dirty):
        for column in inspect(obj).mapper.columns:
            limit = column.type.length if isinstance(column.type, String) else None
            value = getattr(obj, column.key, None)
            if limit is not None and isinstance(value, str) and len(value) > limit:
                raise AegisError(
                    f"{column.table.name}.{column.name} holds at most {limit} characters "
                    f"({len(value)} given)"
                )


def open_current_database(settings: Settings | None = None) -> tuple[Settings, Database]:
    """The database, for a command that only reads: never migrated, never created."""
    from sqlalchemy.engine import make_url

    from aegis.database import migrate
    from aegis.database.core import redacted

    settings = settings or settings_for()
    url = settings.effective_database_url
    parsed = make_url(url)
    path = parsed.database or ""
    on_disk = path not in {"", ":memory:"} and not path.startswith("file:")
    if parsed.get_backend_name() == "sqlite" and on_disk and not Path(path).exists():
        raise migrate.SchemaNotCurrent(
            f"there is no database at {redacted(url)}: run `aegis db upgrade` first"
        )
    settings, database = open_database(settings)
    try:
        migrate.require_current(database.engine)
    except BaseException:
        database.dispose()
        raise
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


ACTOR_MAX = 256  # what the actor columns hold (model_versions.pushed_by, audit_log.actor …)


def check_actor(actor: str, who: str) -> None:
    """``--actor`` is recorded and audited as given: a name, one line of printable characters
    that its columns hold, refused in one line before anything is read, written or audited."""
    if not actor.strip() or not actor.isprintable():
        raise AegisError(f"--actor names who {who}: a user name of printable characters, not empty")
    if len(actor) > ACTOR_MAX:
        raise AegisError(f"--actor: at most {ACTOR_MAX} characters ({len(actor)} given)")


def require_role(session: Session, username: str, role: str) -> None:
    """The CLI's ``--actor`` names an enabled user holding ``role`` (or admin): the rule the API
    applies to its caller, so that a name no user holds (``"bob "``, ``"Bob"``) never passes
    four eyes."""
    from aegis.auth import service as auth_service
    from aegis.auth.errors import PermissionDenied  # the API's code for the same refusal

    user = auth_service.get_user(session=session, username=username)
    if user.disabled or not ({role, "admin"} & set(user.roles)):
        raise PermissionDenied(f"{username} does not hold the {role} role")


def audit_refusal(
    settings: Settings, database: Database, exc: AegisError, *, actor: str, resource: str
) -> None:
    """A CLI request refused for its ``--actor`` is audited as the API's refusal of its caller
    is (aegis.auth.handlers), in a transaction of its own (the request's is rolled back): a
    name no user holds as ``authentication.failed`` (the API's caller it cannot
    authenticate), one without the role or barred by four eyes as ``access.denied``."""
    from aegis.audit.journal import AuditWriter
    from aegis.auth.errors import UserNotFound

    unknown = isinstance(exc, UserNotFound)
    AuditWriter(database, settings.audit_journal_path).record(
        category="auth",
        event_type="authentication.failed" if unknown else "access.denied",
        actor=actor,
        resource=resource[:512],
        outcome="denied",
        data={
            "ip": "cli",
            "reason": exc.message,
            "code": exc.code,
            "username": actor if unknown else None,
        },
    )


LOCAL_OPERATOR = "cli:local-operator"  # what a change made without --actor is recorded as


@contextmanager
def acting(
    settings: Settings,
    database: Database,
    actor: str | None,
    *,
    role: str,
    resource: str,
    default: str = LOCAL_OPERATOR,
) -> Iterator[tuple[Session, str]]:
    """A unit of work for a command that changes state, and the name its audit records give.

    With ``--actor`` (whose shape the caller has checked first with :func:`check_actor`, before
    reading anything or asking for a password), that name must be an enabled user holding
    ``role``, the role the API asks of its caller for the same change (:func:`require_role`, in
    the change's own transaction): otherwise nothing changes and the
    refusal is audited (:func:`audit_refusal`, ``resource`` naming the command). Without it the
    change is recorded as ``default``, :data:`LOCAL_OPERATOR` unless the command knows more,
    whoever holds the database credentials (the first admin, for one, has nobody to name)."""
    from aegis.auth.errors import PermissionDenied, UserNotFound

    if actor is None:
        with database.unit_of_work() as session:
            yield session, default
        return
    checked = False
    try:
        with database.unit_of_work() as session:
            require_role(session, actor, role)
            checked = True
            yield session, actor
    except (PermissionDenied, UserNotFound) as exc:
        if not checked:  # the actor's refusal, not the change's (a target user not found)
            audit_refusal(settings, database, exc, actor=actor, resource=resource)
        raise


def act_as(
    settings: Settings, database: Database, actor: str | None, *, role: str, resource: str
) -> str:
    """:func:`acting`'s check alone, for a command whose change is not one unit of work on
    ``database`` (a backup, the start of an interactive change): the name to record."""
    if actor is None:
        return LOCAL_OPERATOR
    with acting(settings, database, actor, role=role, resource=resource) as (_, name):
        return name


def checked_text(option: str, value: str, schema: type[BaseModel], field: str) -> str:
    """``value`` as the API's ``schema`` takes ``field``: the CLI takes no longer text than the
    API does, and keeps what no database can hold (a NUL; a byte of argv that is not UTF-8, a lone
    surrogate to Python) as the API keeps it, so both database backends store the same."""
    from pydantic import ValidationError, create_model

    info = schema.model_fields[field]
    definition: dict[str, Any] = {field: (info.annotation, info)}
    alone = create_model(schema.__name__, **definition)
    try:
        checked: str = getattr(alone.model_validate({field: value}), field)
    except ValidationError as exc:
        error = exc.errors()[0]
        if error["type"] == "string_too_long":
            raise AegisError(f"{option}: at most {error['ctx']['max_length']} characters") from None
        raise AegisError(f"{option}: {error['msg']}") from None
    return checked
