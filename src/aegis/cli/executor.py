"""``aegis executor``: the global kill switch."""

from __future__ import annotations

import typer

app = typer.Typer(help="The executor kill switch.", no_args_is_help=True)
ACTOR = "cli:local-operator"


def _set(enabled: bool) -> None:
    from aegis.actions.jobs import KILL_SWITCH_FLAG
    from aegis.audit import service as audit_service
    from aegis.cli.runtime import prepare_database
    from aegis.flags import service as flags

    _, database = prepare_database()
    try:
        with database.unit_of_work() as session:
            flags.set_flag(
                session=session,
                name=KILL_SWITCH_FLAG,
                value="true" if enabled else "false",
                actor=ACTOR,
            )
            audit_service.record_audit_event(
                session=session,
                category="system",
                event_type="executor.enabled" if enabled else "executor.disabled",
                actor=ACTOR,
                resource="executor",
                data={"enabled": enabled},
            )
    finally:
        database.dispose()


@app.command("disable")
def disable() -> None:
    """Stop all dispatch now; requests are still evaluated and recorded."""
    _set(False)
    typer.echo("executor dispatch disabled: nothing will be executed until `aegis executor enable`")


@app.command("enable")
def enable() -> None:
    """Resume dispatching allowed and approved actions."""
    _set(True)
    typer.echo("executor dispatch enabled")


@app.command("status")
def status() -> None:
    """Whether the backend dispatches actions."""
    from aegis.actions.jobs import dispatch_enabled
    from aegis.cli.runtime import prepare_database

    settings, database = prepare_database()
    try:
        enabled = dispatch_enabled(settings, database)
    finally:
        database.dispose()
    typer.echo("enabled" if enabled else "disabled")
