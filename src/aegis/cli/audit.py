"""``aegis audit``: verify the chain, write a checkpoint, export for a SIEM."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.progress import Progress

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


def _progress() -> Progress:
    """A spinner on stderr when it is a terminal; silent otherwise (stdout stays the answer)."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    return Progress(console=console, transient=True, disable=not console.is_terminal)


@app.command("verify")
def verify() -> None:
    """Walk the chain and the signed checkpoints; exit 0 only when intact."""
    from aegis.audit import verify as audit_verify
    from aegis.cli.runtime import open_current_database
    from aegis.storage.service import open_store

    settings, database = open_current_database()
    try:
        key_path = settings.effective_audit_verify_key_file
        store = open_store(settings.effective_audit_store_url)
        public_key = audit_verify.verification_key(path=key_path, store=store)
        with _progress() as progress, database.unit_of_work() as session:
            task = progress.add_task("verifying audit chain", total=None)
            report = audit_verify.verify(
                session=session,
                store=store,
                public_key=public_key,
                progress=lambda n: progress.advance(task, n),
            )
    finally:
        database.dispose()
    if public_key is None:
        typer.echo(
            f"warning: no audit verification key at {key_path} (AUDIT_VERIFY_KEY_FILE) and no "
            "signed checkpoints yet: truncation and rewrites are not detectable until the "
            "first checkpoint",
            err=True,
        )
    if not report.ok:
        typer.echo(f"FAILED: {report.problems[0]}")
        raise typer.Exit(1)
    typer.echo(
        f"intact: {report.entries} entries, head {report.head_seq} "
        f"{report.head_hash[:16]}…, {report.checkpoints} checkpoint(s) verified"
    )


@app.command("checkpoint")
def checkpoint() -> None:
    """Sign the chain's current size and head hash and write it to the object store."""
    from aegis.audit import keys
    from aegis.audit.checkpoint import write_checkpoint
    from aegis.cli.runtime import open_current_database
    from aegis.storage.service import open_store

    settings, database = open_current_database()
    try:
        private_key = keys.load_or_create_private_key(settings.effective_audit_signing_key_file)
        with database.unit_of_work() as session:
            cp = write_checkpoint(
                session=session,
                store=open_store(settings.effective_audit_store_url),
                private_key=private_key,
            )
    finally:
        database.dispose()
    typer.echo(f"checkpoint at entry {cp.seq} written to {cp.object_key}")


@app.command("export")
def export(
    to: str = typer.Option(..., "--to", help="s3://bucket/path/audit.jsonl, file:///..., ..."),
    since: datetime | None = typer.Option(None, "--since", help="Only entries at or after this."),
) -> None:
    """Write audit entries as JSON Lines to an object store URL."""
    from aegis.audit.export import export_jsonl
    from aegis.cli.runtime import open_current_database
    from aegis.core.errors import AegisError
    from aegis.storage.service import as_store_url, redact_url

    _refuse_a_local_folder(to)
    _, database = open_current_database()
    try:
        with _progress() as progress, database.unit_of_work() as session:
            task = progress.add_task("exporting", total=None)
            count = export_jsonl(
                session=session, to=to, since=since, progress=lambda n: progress.advance(task, n)
            )
    except ValueError as exc:
        raise AegisError(str(exc)) from None
    finally:
        database.dispose()
    typer.echo(f"exported {count} entries to {redact_url(as_store_url(to))}")


def _refuse_a_local_folder(to: str) -> None:
    """``--to`` empty or naming a folder (a local one, or any target ending in /): one clear
    line, before anything is read (the store would fail late, renaming the export onto the
    folder, or write a file named like the folder)."""
    from pathlib import Path
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    from aegis.audit.export import split_target
    from aegis.core.errors import AegisError
    from aegis.storage.service import as_store_url, redact_url

    example = "e.g. ./audit.jsonl or s3://bucket/audit.jsonl"
    if not to.strip():
        raise AegisError(f"--to is empty: it must name a file, {example}")
    try:
        split_target(to)  # a bucket alone, or a folder ending in /
    except ValueError as exc:
        raise AegisError(str(exc)) from None
    url = as_store_url(to)
    parts = urlsplit(url)
    if parts.scheme == "file" and Path(url2pathname(parts.path)).is_dir():
        raise AegisError(f"--to {redact_url(url)} is a folder: it must name a file, {example}")
