"""``aegis db``: schema migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from aegis.database.core import Database

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(
    revision: str = typer.Argument("heads", help="Target revision (default: every head)."),
) -> None:
    """Migrate the database to REVISION (default: the newest)."""
    from aegis.cli.runtime import prepare_database

    _, database = prepare_database(revision=revision)
    try:
        _say_where(database)
    finally:
        database.dispose()


@app.command("downgrade")
def downgrade(
    revision: str = typer.Argument(
        ..., help="Target revision: a revision id (aegis db upgrade prints them) or base."
    ),
) -> None:
    """Migrate the database down to REVISION."""
    from aegis.cli.runtime import open_database
    from aegis.database import migrate

    _, database = open_database()
    try:
        migrate.downgrade(database.engine, revision)
        _say_where(database)
    finally:
        database.dispose()


def _say_where(database: Database) -> None:
    """The revision(s) the database is at now, as the database says, not as asked."""
    from aegis.database import migrate

    at = ", ".join(migrate.current(database.engine)) or "base (no Aegis tables)"
    typer.echo(f"database at {database.redacted_url} is at revision {at}")
