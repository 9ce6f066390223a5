"""``aegis serve backend|engine|executor``: one service in this process (production shape)."""

from __future__ import annotations

from enum import StrEnum

import typer


class Service(StrEnum):
    backend = "backend"
    engine = "engine"
    executor = "executor"


def serve(
    service: Service = typer.Argument(..., help="Which service to run."),
    host: str | None = typer.Option(None, "--host", help="Interface to listen on."),
    port: int | None = typer.Option(None, "--port", help="Port to listen on."),
) -> None:
    """Start one Aegis service; SIGTERM/Ctrl-C stops it gracefully."""
    from aegis.cli.runtime import open_database, prepare_database, settings_for
    from aegis.core import server

    settings = settings_for(service.value)
    name = service.value
    listen_host = host or getattr(settings, f"{name}_host")
    listen_port = port if port is not None else getattr(settings, f"{name}_port")
    sock = server.bind(listen_host, listen_port)
    if service is Service.backend:
        _, database = prepare_database(settings)
    else:
        _, database = open_database(settings)
    database.dispose()
    app = _factory(service)(settings)
    server.serve(app, sock)


def _factory(service: Service):  # type: ignore[no-untyped-def]
    if service is Service.backend:
        from aegis.backend_app import create_app
    elif service is Service.engine:
        from aegis.engine.app import create_app
    else:
        from aegis.executor.app import create_app
    return create_app
