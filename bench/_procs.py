"""Shared helpers for benchmarks that run real Aegis services on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def pg_database() -> Iterator[str]:
    """A throw-away, migrated PostgreSQL database on 127.0.0.1:5432."""
    from aegis.database import migrate
    from aegis.database.core import Database

    name = f"aegis_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    database = Database(url)
    migrate.upgrade(database.engine)
    database.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(**ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def service(name: str, env: dict[str, str], port: int, health: str) -> Iterator[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("AEGIS_", "DATABASE_"))}
    full.update(env)
    full.setdefault("LOG_LEVEL", "WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aegis", "serve", name, "--port", str(port)],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + health, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def data_dir(tmp: Path) -> str:
    tmp.mkdir(parents=True, exist_ok=True)
    return str(tmp)
