"""``aegis up``: the whole platform on one machine with embedded defaults.

Migrates the database, creates the first admin when there is none, starts the backend, the AI
engine and the executor as child processes (the same ``aegis serve`` a container runs), waits
until each answers its health check, prints the URLs, and on Ctrl-C or SIGTERM stops them all
gracefully: each child gets SIGTERM, finishes its in-flight requests and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from aegis.core.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from aegis.core.config import Settings
    from aegis.database.core import Database

SERVICES = ("engine", "executor", "backend")
HEALTH_PATH = {"backend": "/api/v1/health/ping", "engine": "/health", "executor": "/health"}
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 35.0


def up(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface every service listens on."),
) -> None:
    """Run backend, AI engine and executor together; Ctrl-C stops them gracefully."""
    from rich.console import Console

    from aegis.cli.runtime import prepare_database, settings_for
    from aegis.core import server

    console = Console(stderr=False)
    settings = settings_for("up", backend_host=host, engine_host=host, executor_host=host)
    for name in SERVICES:  # fail before starting anything if a port is taken
        port = getattr(settings, f"{name}_port")
        server.bind(host, port, change=f"set {name.upper()}_PORT").close()
    _, database = prepare_database(settings)
    unshown = [line for line in [_first_admin(database)] if line]
    try:
        _run(console, settings, database, host, unshown)
    finally:
        for line in unshown:  # the password is nowhere else: a failed start still shows it
            console.print(line)
    console.print("Aegis stopped.")


def _run(
    console: Console, settings: Settings, database: Database, host: str, unshown: list[str]
) -> None:
    from aegis.registry import bootstrap

    bootstrapped = bootstrap.ensure_model(settings, database)
    database.dispose()

    data_dir = settings.data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "AEGIS_DATA_DIR": str(data_dir),
        "BACKEND_HOST": host,
        "ENGINE_HOST": host,
        "EXECUTOR_HOST": host,
    }
    if not settings.trusted_keys:  # embedded: trust the local bootstrap signing key
        env["AEGIS_TRUSTED_KEYS"] = str(bootstrap.signing_key_paths(settings)[1].resolve())
    children = {name: _spawn(name, env, logs) for name in SERVICES}
    stop = _install_stop_handlers()
    try:
        urls = {name: f"http://{host}:{getattr(settings, f'{name}_port')}" for name in SERVICES}
        _wait_healthy(children, urls)
        console.print("[bold green]Aegis is up[/]")
        console.print(f"  backend API   {urls['backend']}/api/v1/health")
        console.print(f"  web console   {urls['backend']}/")
        console.print(f"  AI engine     {urls['engine']}/health")
        console.print(f"  executor      {urls['executor']}/health")
        console.print(f"  data dir      {data_dir}  (logs in {logs})")
        for line in unshown:
            console.print(line)
        unshown.clear()
        if bootstrapped:
            console.print(
                f"  model         {settings.model_name} {bootstrapped} signed and "
                "loaded (embedded bootstrap)"
            )
        console.print("Press Ctrl-C to stop.")
        sys.stdout.flush()
        while not stop["requested"]:
            for name, proc in children.items():
                if proc.poll() is not None:
                    raise ConfigError(
                        f"{name} exited with code {proc.returncode}; see {logs / (name + '.log')}"
                    )
            time.sleep(0.3)
    finally:
        _stop_all(children)


def _first_admin(database: Database) -> str | None:
    """Create the first admin when the user table is empty; return the line to print once."""
    from aegis.auth import service as auth_service

    created = auth_service.ensure_first_admin(database=database)
    if created is None:
        return None
    username, password = created
    return (
        f"  first admin   user [bold]{username}[/] password [bold]{password}[/]  "
        "(shown once; change it with `aegis user reset-password admin`)"
    )


def _spawn(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log_file = (logs / f"{name}.log").open("ab")
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "aegis", "serve", name],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
    )


def _install_stop_handlers() -> dict[str, bool]:
    state = {"requested": False}

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        state["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return state


def _wait_healthy(children: dict[str, subprocess.Popen[bytes]], urls: dict[str, str]) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    pending = set(children)
    with httpx.Client(timeout=2.0) as client:
        while pending:
            for name in sorted(pending):
                if children[name].poll() is not None:
                    raise ConfigError(f"{name} failed to start; see its log in the data dir")
                try:
                    if client.get(urls[name] + HEALTH_PATH[name]).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise ConfigError(f"{', '.join(sorted(pending))} not healthy after 60 s")
            time.sleep(0.2)


def _stop_all(children: dict[str, subprocess.Popen[bytes]]) -> None:
    # The backend first so it stops sending work to the engine and executor.
    for name in reversed(SERVICES):
        proc = children[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in children.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
