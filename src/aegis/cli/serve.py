"""``aegis serve backend|engine|executor``: one service in this process (production shape)."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from fastapi import FastAPI

    from aegis.core.config import Settings


class Service(StrEnum):
    backend = "backend"
    engine = "engine"
    executor = "executor"


def serve(
    service: Service = typer.Argument(..., help="Which service to run."),
    host: str | None = typer.Option(None, "--host", help="Interface to listen on."),
    port: int | None = typer.Option(None, "--port", min=0, max=65535, help="Port to listen on."),
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
    server.serve(_build(service, settings), sock, trusted_proxies=settings.trusted_proxies)


def _build(service: Service, settings: Settings) -> FastAPI:
    if service is Service.backend:
        from aegis.backend_app import create_app

        return create_app(settings)
    if service is Service.engine:
        from aegis.database.core import Database
        from aegis.engine.app import create_app as engine_app
        from aegis.engine.signed_loader import signed_loader, watch_registry

        # The engine serves only what the registry promoted and the signature vouches for,
        # and swaps in a newly promoted version without dropping requests.
        database = Database(settings.effective_database_url)
        return engine_app(
            settings,
            loader=signed_loader(settings, database),
            watch=lambda holder: watch_registry(holder, settings, database),
        )
    from aegis.executor.app import create_app as executor_app

    return executor_app(settings)
