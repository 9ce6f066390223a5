"""Entry point of the ``aegis`` command.

Every expected failure is one line on stderr (``error: ...``) and a non-zero exit; a traceback
only with ``--debug``. Ctrl-C and SIGTERM interrupt a command the same way (``KeyboardInterrupt``,
so ``finally`` blocks clean up): one line on stderr and exit 130 or 143. ``aegis serve`` and
``aegis up`` keep their own graceful shutdown.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

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
    safety,
    scan,
    serve,
    up,
    user,
)
from aegis.core.errors import AegisError
from aegis.storage import service as storage_service

app = typer.Typer(
    name="aegis",
    help="Aegis: let an AI act on Kubernetes without trusting it blindly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_OWN_SHUTDOWN = {"serve", "up"}  # uvicorn and `aegis up` handle SIGINT/SIGTERM themselves
_caught: list[int] = []  # the stop signal that interrupted this run, if any


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    _state["debug"] = debug
    if ctx.invoked_subcommand not in _OWN_SHUTDOWN:
        _interrupt_on_stop_signals()
        # A one-shot command's memory:// store would vanish as it reports success.
        storage_service.allow_memory_stores(False)


def _stop(signum: int, _frame: FrameType | None) -> None:
    _caught.append(signum)
    # Interrupted mid-fetch, SQLAlchemy drops the connection, then logs (with a traceback) that
    # the cursor on it cannot be closed: noise while the command unwinds, not an error.
    logging.getLogger("sqlalchemy").setLevel(logging.CRITICAL)
    raise KeyboardInterrupt


def _interrupt_on_stop_signals() -> None:
    """SIGTERM, like Ctrl-C, raises KeyboardInterrupt: the command unwinds and cleans up (without
    a handler, SIGTERM ended the process on the spot, leaving e.g. a backup's spool behind)."""
    if threading.current_thread() is threading.main_thread():
        for signum in _STOP_SIGNALS:
            signal.signal(signum, _stop)


@contextmanager
def _restored_signal_handlers() -> Iterator[None]:
    """Put back the handlers :func:`run` found (the tests call it in-process)."""
    main_thread = threading.current_thread() is threading.main_thread()
    saved: dict[int, Any] = {s: signal.getsignal(s) for s in _STOP_SIGNALS} if main_thread else {}
    sqlalchemy_log = logging.getLogger("sqlalchemy")
    level = sqlalchemy_log.level
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        sqlalchemy_log.setLevel(level)


app.add_typer(audit.app, name="audit")
app.add_typer(backup.app, name="backup")
app.add_typer(db.app, name="db")
app.add_typer(engine.app, name="engine")
app.add_typer(executor.app, name="executor")
app.add_typer(keys.app, name="keys")
app.add_typer(model.app, name="model")
app.add_typer(policy.app, name="policy")
app.add_typer(safety.app, name="safety")
app.add_typer(scan.app, name="scan")
app.add_typer(user.app, name="user")
app.command("serve")(serve.serve)
app.command("up")(up.up)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (used by :func:`main` and the tests)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args
    _caught.clear()
    memory_allowed = storage_service.allow_memory_stores(True)
    try:
        with _restored_signal_handlers():
            code = _run(args)
    finally:
        storage_service.allow_memory_stores(memory_allowed)  # the tests call run() in-process
    if _caught:  # Typer turns the KeyboardInterrupt into exit code 130, silently
        return _interrupted()
    return code


def _interrupted() -> int:
    signum = _caught[0]
    typer.echo(f"interrupted ({signal.Signals(signum).name})", err=True)
    return 128 + signum


def _run(args: list[str]) -> int:  # noqa: PLR0911, PLR0912 - one exit code per outcome
    try:
        result = app(args=args, prog_name="aegis", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        if not _caught:  # Ctrl-C or SIGTERM at a prompt is reported once, by run()
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
