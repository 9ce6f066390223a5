"""Audit append throughput (chained vs plain INSERT) and chain verification speed, PostgreSQL.

    .venv/bin/python -m bench.audit_append [--events 4000] [--verify-entries 1000000]

Creates a throw-away database on 127.0.0.1:5432, runs the Alembic migrations, and in the same
run measures, for 1 and 8 writer processes, with one event per transaction and with batches of
100 per transaction:

* plain:   INSERT of the same rows into a copy of audit_log with no chain (no lock, no hash);
* chained: ``aegis.audit.service.append`` (advisory lock, head read, SHA-256, gapless seq).

Durability is the same for both (synchronous_commit stays on). Then it fills the chain to
``--verify-entries`` and times ``aegis.audit.verify.verify`` over it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import MetaData, text
from sqlalchemy import Table as SATable

from aegis.audit import service as audit_service
from aegis.audit import verify
from aegis.audit.schemas import AuditEventCreate
from aegis.database import migrate
from aegis.database.bulk import insert_rows
from aegis.database.core import Database

ADMIN = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}


def _event(i: int) -> AuditEventCreate:
    return AuditEventCreate(
        category="system",
        event_type="bench.event",
        actor="bench",
        resource="staging/web",
        data={"i": i, "action": "restart_deployment", "namespace": "staging", "name": "web"},
    )


def _plain_rows(events: list[AuditEventCreate]) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [
        {
            "event_id": str(uuid.uuid4()),
            "created_at": now,
            "category": e.category,
            "event_type": e.event_type,
            "actor": e.actor,
            "resource": e.resource,
            "outcome": e.outcome,
            "data": json.dumps(e.data, sort_keys=True),
            "prev_hash": "0" * 64,
            "entry_hash": "0" * 64,
        }
        for e in events
    ]


# The same one-statement bulk INSERT the chain uses (aegis.database.bulk), so that the ratio is
# the price of the chain alone (lock, head read, hashing), not of a different way of inserting.


def _writer(url: str, mode: str, events: int, batch: int, ready: Any) -> None:
    database = Database(url, pool_size=1, max_overflow=0)
    with database.engine.connect():  # connect before the clock starts
        pass
    plain = SATable("bench_plain", MetaData(), autoload_with=database.engine)
    ready.wait()
    for start in range(0, events, batch):
        chunk = [_event(i) for i in range(start, min(events, start + batch))]
        with database.unit_of_work() as session:
            if mode == "chained":
                audit_service.append(session=session, events=chunk)
            else:
                insert_rows(session, plain, _plain_rows(chunk))
    database.dispose()


def _run(url: str, mode: str, writers: int, events: int, batch: int) -> float:
    per = events // writers
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(writers + 1)
    procs = [
        ctx.Process(target=_writer, args=(url, mode, per, batch, ready)) for _ in range(writers)
    ]
    for p in procs:
        p.start()
    ready.wait()  # every writer has imported and connected: start the clock
    started = time.perf_counter()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return per * writers / (time.perf_counter() - started)


def _fill(database: Database, total: int) -> None:
    with Progress() as progress:
        task = progress.add_task("filling chain", total=total)
        done = database.engine.connect().execute(text("SELECT count(*) FROM audit_log")).scalar()
        done = int(done or 0)
        progress.advance(task, done)
        while done < total:
            n = min(2000, total - done)
            with database.unit_of_work() as session:
                audit_service.append(session=session, events=[_event(i) for i in range(n)])
            done += n
            progress.advance(task, n)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--verify-entries", type=int, default=1_000_000)
    args = parser.parse_args()
    console = Console()
    name = f"aegis_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(**ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    database = Database(url)
    try:
        migrate.upgrade(database.engine)
        with database.engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_plain (LIKE audit_log INCLUDING DEFAULTS)"))
            conn.execute(text("ALTER TABLE bench_plain DROP COLUMN seq"))
            conn.execute(text("ALTER TABLE bench_plain ADD COLUMN seq bigserial PRIMARY KEY"))
            conn.execute(text("CREATE UNIQUE INDEX ON bench_plain (event_id)"))
        table = Table("writers", "events/txn", "plain INSERT /s", "chained /s", "ratio")
        for writers in (1, 8):
            for batch in (1, 100):
                plain = _run(url, "plain", writers, args.events, batch)
                chained = _run(url, "chained", writers, args.events, batch)
                table.add_row(
                    str(writers),
                    str(batch),
                    f"{plain:,.0f}",
                    f"{chained:,.0f}",
                    f"{chained / plain:.2f}",
                )
        console.print(table)
        _fill(database, args.verify_entries)
        with database.unit_of_work() as session:
            started = time.perf_counter()
            report = verify.verify(session=session, store=None, public_key=None)
            elapsed = time.perf_counter() - started
        assert report.ok, report.problems
        console.print(
            f"verify: {report.entries:,} entries in {elapsed:.1f} s = "
            f"{report.entries / elapsed:,.0f} entries/s"
        )
    finally:
        database.dispose()
        with psycopg.connect(**ADMIN, autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
