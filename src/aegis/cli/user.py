"""``aegis user``: local users and their roles."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(help="Local users and roles.", no_args_is_help=True)
ACTOR = "cli:local-operator"


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
) -> None:
    """Create a user holding one or more roles."""
    from aegis.auth import service
    from aegis.cli.runtime import prepare_database

    password = _password(password_stdin)
    _, database = prepare_database()
    try:
        with database.unit_of_work() as session:
            user = service.create_user(
                session=session, username=username, password=password, roles=role, actor=ACTOR
            )
            typer.echo(f"created {user.username} ({', '.join(user.roles)})")
    finally:
        database.dispose()


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


def _toggle(username: str, disabled: bool) -> None:
    from aegis.auth import service
    from aegis.cli.runtime import prepare_database

    _, database = prepare_database()
    try:
        with database.unit_of_work() as session:
            service.set_disabled(session=session, username=username, disabled=disabled, actor=ACTOR)
    finally:
        database.dispose()
    typer.echo(f"{username} {'disabled' if disabled else 'enabled'}")


@app.command("disable")
def disable(username: str) -> None:
    """Disable a user and end their sessions."""
    _toggle(username, True)


@app.command("enable")
def enable(username: str) -> None:
    """Enable a disabled user."""
    _toggle(username, False)


@app.command("reset-password")
def reset_password(
    username: str,
    password_stdin: bool = typer.Option(False, "--password-stdin"),
) -> None:
    """Set a new password and end the user's sessions."""
    from aegis.auth import service
    from aegis.cli.runtime import prepare_database

    password = _password(password_stdin)
    _, database = prepare_database()
    try:
        with database.unit_of_work() as session:
            service.reset_password(
                session=session, username=username, password=password, actor=ACTOR
            )
    finally:
        database.dispose()
    typer.echo(f"password reset for {username}")


@app.command("set-roles")
def set_roles(username: str, role: list[str] = typer.Option(..., "--role")) -> None:
    """Replace a user's roles (audited; ends their sessions)."""
    from aegis.auth import service
    from aegis.cli.runtime import prepare_database

    _, database = prepare_database()
    try:
        with database.unit_of_work() as session:
            service.set_roles(session=session, username=username, roles=role, actor=ACTOR)
    finally:
        database.dispose()
    typer.echo(f"{username} now holds {', '.join(sorted(set(role)))}")
