"""``aegis db``: schema migrations."""

from __future__ import annotations

import typer

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(
    revision: str = typer.Argument("heads", help="Target revision (default: every head)."),
) -> None:
    """Migrate the database to REVISION (default: the newest)."""
    from aegis.cli.runtime import prepare_database

    settings, database = prepare_database(revision=revision)
    typer.echo(f"database at {database.redacted_url} is at revision {revision}")
    database.dispose()
    del settings


@app.command("downgrade")
def downgrade(
    revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base."),
) -> None:
    """Migrate the database down to REVISION."""
    from aegis.cli.runtime import open_database
    from aegis.database import migrate

    _, database = open_database()
    try:
        migrate.downgrade(database.engine, revision)
    finally:
        database.dispose()
    typer.echo(f"database downgraded to {revision}")
