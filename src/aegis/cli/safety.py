"""``aegis safety``: the review queue of safety flags."""

from __future__ import annotations

import typer

app = typer.Typer(help="Safety flags: list the review queue, close a flag.", no_args_is_help=True)


@app.command("list")
def list_flags(
    status: str | None = typer.Option(None, "--status", help="open, confirmed or dismissed."),
    reason: str | None = typer.Option(None, "--reason", help="Only this reason."),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
) -> None:
    """Flags, newest first (``--status open``: what is left to review)."""
    from rich.console import Console
    from rich.table import Table

    from aegis.cli.runtime import open_current_database
    from aegis.core.errors import AegisError
    from aegis.safety import service

    if status is not None and status not in ("open", *service.VERDICTS):
        raise AegisError(f"--status: one of open, {', '.join(service.VERDICTS)}")
    if reason is not None and reason not in service.REASONS:
        raise AegisError(f"--reason: one of {', '.join(service.REASONS)}")
    _, database = open_current_database()
    table = Table("id", "reason", "subject", "status", "raised", "excerpt")
    try:
        with database.unit_of_work() as session:
            rows, _ = service.list_flags(session=session, status=status, reason=reason, limit=limit)
            for row in rows:
                table.add_row(
                    str(row.id),
                    row.reason,
                    f"{row.subject_kind}/{row.subject_id}",
                    row.status if row.status == "open" else f"{row.status} by {row.reviewed_by}",
                    row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    row.excerpt,
                )
    finally:
        database.dispose()
    Console().print(table)


@app.command("review")
def review(
    flag_id: int = typer.Argument(
        ..., min=1, max=2**31 - 1, help="The flag's id (aegis safety list)."
    ),
    verdict: str = typer.Option(..., "--verdict", help="confirmed or dismissed."),
    actor: str = typer.Option(..., "--actor", help="The reviewer (a user with the approver role)."),
    note: str = typer.Option("", "--note"),
) -> None:
    """Close an open flag as confirmed (a real problem) or dismissed (a false positive)."""
    from aegis.auth.errors import PermissionDenied, UserNotFound
    from aegis.cli.runtime import (
        audit_refusal,
        check_actor,
        checked_text,
        prepare_database,
        require_role,
    )
    from aegis.core.errors import AegisError
    from aegis.safety import service
    from aegis.safety.schemas import ReviewBody

    if verdict not in service.VERDICTS:
        raise AegisError(f"--verdict: one of {', '.join(service.VERDICTS)}")
    note = checked_text("--note", note, ReviewBody, "note")
    check_actor(actor, "reviews")
    settings, database = prepare_database()
    try:
        with database.unit_of_work() as session:
            require_role(session, actor, "approver")
            service.review(
                session=session, flag_id=flag_id, verdict=verdict, note=note, actor=actor
            )
    except (PermissionDenied, UserNotFound) as exc:  # audited once the request's is rolled back
        audit_refusal(
            settings, database, exc, actor=actor, resource=f"aegis safety review {flag_id}"
        )
        raise
    finally:
        database.dispose()
    typer.echo(f"safety flag {flag_id}: {verdict}")
