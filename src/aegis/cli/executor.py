"""``aegis executor``: the backend's dispatch switch (one of the kill switches).

It is a flag in the backend's database that the backend's dispatcher reads before it sends each
action. It does not reach the executor: the executor runs any request signed with
``EXECUTOR_HMAC_SECRET``, whoever sends it, until ``EXECUTOR_ENABLED=false`` is set on the
executor or it is scaled to 0.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    help="The backend's dispatch switch: whether the backend sends actions to the executor.",
    no_args_is_help=True,
)
ACTOR_HELP = (
    "Who flips the switch (audited): an enabled user with the admin role, else refused "
    "(audited). Default: cli:local-operator."
)
STILL_RUNS = (
    "An action already sent completes, and the executor itself still runs signed requests from "
    "anything holding EXECUTOR_HMAC_SECRET; to stop it too, set EXECUTOR_ENABLED=false on the "
    "executor or run `kubectl -n aegis scale deployment/executor --replicas=0`."
)


def _set(enabled: bool, actor: str | None) -> None:
    from aegis.actions.jobs import KILL_SWITCH_FLAG
    from aegis.audit import service as audit_service
    from aegis.cli.runtime import acting, check_actor, prepare_database
    from aegis.flags import service as flags

    if actor is not None:
        check_actor(actor, "flips the switch")
    command = f"aegis executor {'enable' if enabled else 'disable'}"
    settings, database = prepare_database()
    try:
        # admin: the role security.md gives the kill switches (there is no API call for it)
        with acting(settings, database, actor, role="admin", resource=command) as (session, name):
            flags.set_flag(
                session=session,
                name=KILL_SWITCH_FLAG,
                value="true" if enabled else "false",
                actor=name,
            )
            audit_service.record_audit_event(
                session=session,
                category="system",
                event_type="executor.enabled" if enabled else "executor.disabled",
                actor=name,
                resource="executor",
                data={"enabled": enabled},
            )
    finally:
        database.dispose()


@app.command(
    "disable",
    short_help="Stop the backend sending actions to the executor (not the executor itself).",
    help="Stop the backend sending actions to the executor, now; requests are still evaluated "
    f"and recorded, and approved ones wait. {STILL_RUNS}",
)
def disable(actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP)) -> None:
    _set(False, actor)
    typer.echo(
        "executor dispatch disabled: the backend sends no action to the executor until "
        f"`aegis executor enable`. {STILL_RUNS}"
    )


@app.command("enable")
def enable(actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP)) -> None:
    """Let the backend send allowed and approved actions to the executor again."""
    _set(True, actor)
    typer.echo("executor dispatch enabled")


@app.command("status")
def status() -> None:
    """Whether the backend sends actions to the executor (this switch, and EXECUTOR_ENABLED in
    this environment); the executor's own EXECUTOR_ENABLED shows in its /health as "actions"."""
    from aegis.actions.jobs import dispatch_enabled
    from aegis.cli.runtime import open_current_database

    settings, database = open_current_database()
    try:
        enabled = dispatch_enabled(settings, database)
    finally:
        database.dispose()
    typer.echo("enabled" if enabled else "disabled")
