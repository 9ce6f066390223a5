"""``aegis executor``."""

from __future__ import annotations

import typer

app = typer.Typer(help="executor commands.", no_args_is_help=True)
