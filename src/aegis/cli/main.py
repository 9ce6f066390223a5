"""Entry point of the ``aegis`` command.

Every expected failure is one line on stderr (``error: ...``) and a non-zero exit; a traceback
only with ``--debug``.
"""

from __future__ import annotations

import sys

import typer

from aegis.cli import (
    audit,
    backup,
    db,
    engine,
    executor,
    keys,
    model,
    policy,
    scan,
    serve,
    up,
    user,
)
from aegis.core.errors import AegisError

app = typer.Typer(
    name="aegis",
    help="Aegis: let an AI act on Kubernetes without trusting it blindly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    _state["debug"] = debug


app.add_typer(audit.app, name="audit")
app.add_typer(backup.app, name="backup")
app.add_typer(db.app, name="db")
app.add_typer(engine.app, name="engine")
app.add_typer(executor.app, name="executor")
app.add_typer(keys.app, name="keys")
app.add_typer(model.app, name="model")
app.add_typer(policy.app, name="policy")
app.add_typer(scan.app, name="scan")
app.add_typer(user.app, name="user")
app.command("serve")(serve.serve)
app.command("up")(up.up)


def run(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one exit code per outcome
    """Run the CLI and return its exit code (used by :func:`main` and the tests)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args
    try:
        result = app(args=args, prog_name="aegis", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.TyperException as exc:  # a usage error: Typer's own message, exit code 2
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc.format_message()}", err=True)
        return exc.exit_code
    except AegisError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {exc.message}", err=True)
        return 1
    except OSError as exc:  # a path or an address that cannot be used, named in one line
        if _state["debug"]:
            raise
        where = f": {str(exc.filename)[:160]}" if exc.filename is not None else ""
        typer.echo(f"error: {exc.strerror or type(exc).__name__}{where}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {_describe(exc)} (run with --debug for details)", err=True)
        return 1
    return int(result) if isinstance(result, int) else 0


def _describe(exc: Exception) -> str:
    """One line about an unexpected error. A database error is its driver's first line, never
    the SQL or the parameters SQLAlchemy appends; a missing table says to migrate."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.orig is not None:
        lines = str(exc.orig).strip().splitlines()
        detail = lines[0][:300] if lines else ""
        missing = "no such table" in detail or ("relation" in detail and "does not exist" in detail)
        hint = " (no Aegis tables here: run `aegis db upgrade`)" if missing else ""
        return f"database error ({type(exc.orig).__name__}): {detail}{hint}"
    lines = str(exc).strip().splitlines()
    return f"unexpected {type(exc).__name__}: {lines[0][:300] if lines else ''}"


def main() -> None:
    sys.exit(run())
