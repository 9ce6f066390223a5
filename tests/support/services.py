"""The machine's real PostgreSQL and Redis, and throw-away databases on them."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_USER = "postgres"
PG_ADMIN_URL = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def postgres_up() -> bool:
    if not _port_open(PG_HOST, PG_PORT):
        return False
    try:
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3
        ):
            return True
    except psycopg.Error:
        return False


def redis_up() -> bool:
    if not _port_open("127.0.0.1", 6379):
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def pg_url(name: str) -> str:
    return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def create_pg_database(name: str, template: str | None = None) -> None:
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
    ) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        conn.execute(stmt)


def drop_pg_database(name: str) -> None:
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_database(backend: str, template: Any, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a new database: a copy of ``template`` (a SQLite file, or a PostgreSQL
    database name used as a template), or one with no schema when ``template`` is None. A
    PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        path = tmp_path / f"db-{uuid.uuid4().hex[:8]}.db"
        if template is not None:
            shutil.copyfile(template, path)
        yield f"sqlite+pysqlite:///{path}"
        return
    name = f"aegis_t_{uuid.uuid4().hex[:12]}"
    create_pg_database(name, template=template)
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on a free loopback port answering with ``handler``; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
