"""Backup, restore and drill times (the RTO figure) and their memory, SQLite and PostgreSQL.

Fills a freshly migrated database with N audit events (the table that grows without bound: each
with a realistic ~300-byte JSON payload, hash-chained by the real append) plus a few users and
incidents, then times ``aegis.backup`` end to end: create (snapshot, JSON Lines, gzip, AES-GCM,
write to a ``file://`` store), restore into an empty migrated database (verify pass, insert,
sequence reset, chain verification), and the drill (restore into a throw-away SQLite file plus
its checks). Python heap peaks (tracemalloc) show memory does not grow with the row count.

    .venv/bin/python -m bench.backup_restore [--rows 100000] [--postgres]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr

from aegis.audit import service as audit_service
from aegis.audit.schemas import AuditEventCreate
from aegis.backup import drill, restore, service
from aegis.core.config import Settings
from aegis.database import migrate
from aegis.database.core import Database, make_engine

T = TypeVar("T")
KEY = "bench-backup-key-" + "k" * 32
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


def _settings(data: Path, url: str, *, encrypted: bool) -> Settings:
    secrets: dict[str, Any] = {
        name: SecretStr(name + "-" + "x" * 32)
        for name in (
            "jwt_secret",
            "jwt_refresh_secret",
            "executor_hmac_secret",
            "api_key",
            "alert_webhook_token",
        )
    }
    return Settings(
        _env_file=None,
        data_dir=data,
        database_url=url,
        backup_dir=data / "backups",
        backup_encryption_key=SecretStr(KEY) if encrypted else None,
        **secrets,
    )


def _fill(url: str, rows: int) -> None:
    database = Database(url)
    payload = {
        "action_id": str(uuid.uuid4()),
        "namespace": "payments-prod",
        "name": "checkout-api",
        "decision": "allow",
        "policies": [{"id": "prod-restarts", "version": 3}],
        "reason": "restart_deployment allowed by prod-restarts for role:operator",
        "confidence": 0.93,
    }
    done = 0
    while done < rows:
        batch = min(5000, rows - done)
        events = [
            AuditEventCreate(
                category="action",
                event_type="action.requested",
                actor=f"user{i % 50}",
                resource=f"deployment:payments-prod/checkout-api-{i % 20}",
                data={**payload, "seq_hint": done + i},
            )
            for i in range(batch)
        ]
        with database.unit_of_work() as session:
            audit_service.append(session=session, events=events)
        done += batch
    database.dispose()


def _timed(fn: Callable[[], T], *, memory: bool) -> tuple[T, float, float]:
    """(result, seconds, Python heap peak in MiB — only when ``memory``: tracing slows it)."""
    if memory:
        tracemalloc.start()
    started = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - started
    peak = 0.0
    if memory:
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return result, elapsed, peak


def _new_database(backend: str, folder: Path, made: list[str]) -> str:
    if backend == "sqlite":
        return f"sqlite+pysqlite:///{folder / f'{uuid.uuid4().hex[:8]}.db'}"
    import psycopg

    name = f"aegis_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    made.append(name)
    return f"{PG}/{name}"


def _drop(made: list[str]) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        for name in made:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(backend: str, rows: int, *, memory: bool) -> list[dict[str, Any]]:
    results = []
    made: list[str] = []
    with tempfile.TemporaryDirectory(prefix="aegis-bench-") as tmp:
        folder = Path(tmp)
        source = _new_database(backend, folder, made)
        engine = make_engine(source)
        migrate.upgrade(engine)
        engine.dispose()
        _fill(source, rows)
        try:
            for encrypted in (False, True):
                settings = _settings(folder / f"data-{encrypted}", source, encrypted=encrypted)
                created, create_s, create_mib = _timed(
                    partial(service.create, settings=settings, actor="bench", prune=False),
                    memory=memory,
                )
                target = _new_database(backend, folder, made)
                restored, restore_s, restore_mib = _timed(
                    partial(
                        restore.restore,
                        settings=settings,
                        artifact=created.uri,
                        actor="bench",
                        target_url=target,
                    ),
                    memory=memory,
                )
                assert restored.chain.ok
                report, drill_s, _ = _timed(
                    partial(drill.drill, settings=settings, actor="bench", artifact=created.uri),
                    memory=False,
                )
                assert report.ok, report.problems
                results.append(
                    {
                        "backend": backend,
                        "encrypted": encrypted,
                        "rows": created.manifest.total_rows,
                        "bytes": created.size,
                        "create_s": create_s,
                        "create_mib": create_mib,
                        "restore_s": restore_s,
                        "rto_s": restored.rto_s,
                        "restore_mib": restore_mib,
                        "drill_s": drill_s,
                        **restored.timings,
                    }
                )
        finally:
            if made:
                _drop(made)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true", help="also PostgreSQL at 127.0.0.1")
    parser.add_argument(
        "--memory", action="store_true", help="trace Python heap peaks (slower; no timings)"
    )
    args = parser.parse_args()
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus; "
        f"{args.rows} audit events"
    )
    backends = ["sqlite", "postgresql"] if args.postgres else ["sqlite"]
    if args.memory:
        print("| backend | encrypted | rows | heap peak: create | restore |")
        print("|---|---|---|---|---|")
    else:
        print(
            "| backend | encrypted | rows | artifact | create "
            "| restore: verify / migrate / insert / chain | RTO (restore total) | drill |"
        )
        print("|---|---|---|---|---|---|---|---|")
    for backend in backends:
        for r in run(backend, args.rows, memory=args.memory):
            enc = "yes" if r["encrypted"] else "no"
            if args.memory:
                print(
                    f"| {backend} | {enc} | {r['rows']:,} | {r['create_mib']:.1f} MiB "
                    f"| {r['restore_mib']:.1f} MiB |"
                )
            else:
                print(
                    f"| {backend} | {enc} | {r['rows']:,} | {r['bytes'] / 2**20:.1f} MiB "
                    f"| {r['create_s']:.2f} s | {r['verify_s']:.2f} / {r['migrate_s']:.2f} / "
                    f"{r['insert_s']:.2f} / {r['audit_verify_s']:.2f} s | {r['rto_s']:.2f} s "
                    f"| {r['drill_s']:.2f} s |"
                )
            sys.stdout.flush()


if __name__ == "__main__":
    main()
