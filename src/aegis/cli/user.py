"""``aegis user``: local users and their roles."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

app = typer.Typer(help="Local users and roles.", no_args_is_help=True)
ACTOR_HELP = (
    "Who makes the change (audited): an enabled user with the admin role, else refused "
    "(audited). Default: cli:local-operator (the first admin, for one, has nobody to name)."
)


def _checked(actor: str | None) -> str | None:
    """``--actor``'s shape, refused as it is parsed: before a password is asked for."""
    from aegis.cli.runtime import check_actor

    if actor is not None:
        check_actor(actor, "makes the change")
    return actor


def _actor_option() -> Any:  # a Typer parameter default, read as the option
    return typer.Option(None, "--actor", help=ACTOR_HELP, callback=_checked)


@contextmanager
def _change(actor: str | None, command: str) -> Iterator[tuple[Session, str]]:
    """The unit of work of a change to users, made as ``actor`` (an admin, as the API asks)."""
    from aegis.cli.runtime import acting, prepare_database

    settings, database = prepare_database()
    try:
        with acting(settings, database, actor, role="admin", resource=command) as change:
            yield change
    finally:
        database.dispose()


def _password(from_stdin: bool) -> str:
    from aegis.core.errors import AegisError

    if not from_stdin and not sys.stdin.isatty():  # a prompt would echo it, or wait on a pipe
        raise AegisError("no terminal to ask for the password on: pass it with --password-stdin")
    try:
        if from_stdin:
            value = sys.stdin.readline().rstrip("\r\n")  # a file saved on Windows ends in CRLF
        else:
            value = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        value.encode()  # undecodable bytes come in as lone surrogates; they cannot be hashed
    except UnicodeError:
        raise AegisError("the password is not UTF-8 text") from None
    if not 12 <= len(value) <= 1024:
        raise AegisError("a password is 12 to 1024 characters")
    return value


@app.command("create")
def create(
    username: str = typer.Argument(...),
    role: list[str] = typer.Option(..., "--role", help="viewer, operator, approver or admin."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from stdin."
    ),
    actor: str | None = _actor_option(),
) -> None:
    """Create a user holding one or more roles."""
    from aegis.auth import service

    password = _password(password_stdin)
    with _change(actor, f"aegis user create {username}") as (session, name):
        user = service.create_user(
            session=session, username=username, password=password, roles=role, actor=name
        )
        typer.echo(f"created {user.username} ({', '.join(user.roles)})")


@app.command("list")
def list_users() -> None:
    """Every user with roles and state."""
    from rich.console import Console
    from rich.table import Table

    from aegis.auth import service
    from aegis.cli.runtime import open_current_database

    _, database = open_current_database()
    table = Table("user", "roles", "state")
    try:
        with database.unit_of_work() as session:
            for user in service.list_users(session=session):
                table.add_row(
                    user.username, ", ".join(user.roles), "disabled" if user.disabled else "active"
                )
    finally:
        database.dispose()
    Console().print(table)


def _toggle(username: str, disabled: bool, actor: str | None) -> None:
    from aegis.auth import service

    verb = "disable" if disabled else "enable"
    with _change(actor, f"aegis user {verb} {username}") as (session, name):
        service.set_disabled(session=session, username=username, disabled=disabled, actor=name)
    typer.echo(f"{username} {verb}d")


@app.command("disable")
def disable(username: str, actor: str | None = _actor_option()) -> None:
    """Disable a user and end their sessions."""
    _toggle(username, True, actor)


@app.command("enable")
def enable(username: str, actor: str | None = _actor_option()) -> None:
    """Enable a disabled user."""
    _toggle(username, False, actor)


@app.command("reset-password")
def reset_password(
    username: str,
    password_stdin: bool = typer.Option(False, "--password-stdin"),
    actor: str | None = _actor_option(),
) -> None:
    """Set a new password and end the user's sessions."""
    from aegis.auth import service

    password = _password(password_stdin)
    with _change(actor, f"aegis user reset-password {username}") as (session, name):
        service.reset_password(session=session, username=username, password=password, actor=name)
    typer.echo(f"password reset for {username}")


@app.command("set-roles")
def set_roles(
    username: str,
    role: list[str] = typer.Option(..., "--role"),
    actor: str | None = _actor_option(),
) -> None:
    """Replace a user's roles (audited; ends their sessions)."""
    from aegis.auth import service

    with _change(actor, f"aegis user set-roles {username}") as (session, name):
        service.set_roles(session=session, username=username, roles=role, actor=name)
    typer.echo(f"{username} now holds {', '.join(sorted(set(role)))}")
