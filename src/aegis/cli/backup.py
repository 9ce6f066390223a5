"""``aegis backup``: create, list, prune, restore and drill database backups.

The runbook's ``scripts/backup/backup_db.py``, ``scripts/backup/restore_db.py``,
``infrastructure/scripts/backup.sh`` and ``restore.sh`` and the Kubernetes CronJob/Job
(``k8s/jobs/``) all run these commands. See docs/operations/backup-restore.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from aegis.backup.drill import DrillReport
    from aegis.backup.restore import RestoreResult
    from aegis.core.config import Settings

app = typer.Typer(
    help="Database backups: create, list, prune, restore, and the restore drill.",
    no_args_is_help=True,
)
ACTOR_HELP = (
    "Who runs it (audited): an enabled user with the admin role in DATABASE_URL, else refused "
    "(audited). Default: cli:local-operator."
)


def _actor(settings: Settings, actor: str | None, command: str) -> str:
    """The name the command's audit records give: ``--actor``, once it is known to name an
    enabled admin of the configured database (backups have no API route; admin is the role for
    everything else that changes the platform), refused and audited there otherwise."""
    from aegis.cli.runtime import LOCAL_OPERATOR, act_as, check_actor, open_database

    if actor is None:
        return LOCAL_OPERATOR
    check_actor(actor, "runs it")
    # not migrated: a database at an older revision is still backed up as it is
    _, database = open_database(settings)
    try:
        return act_as(settings, database, actor, role="admin", resource=command)
    finally:
        database.dispose()


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar on stderr when it is a terminal; silent otherwise."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)

        def advance(rows: int, total: int) -> None:
            bar.update(task, total=total, advance=rows)

        yield advance


def _wait_for(url: str) -> None:
    from aegis.cli.runtime import settings_for
    from aegis.database.core import Database, wait_for_database

    settings = settings_for()
    database = Database(url)
    try:
        wait_for_database(database.engine, timeout_s=settings.database_connect_timeout_s)
    finally:
        database.dispose()


@app.command("create")
def create(
    to: str | None = typer.Option(
        None, "--to", help="Object store URL or folder (default: BACKUP_DIR), e.g. s3://bkt/db."
    ),
    no_prune: bool = typer.Option(
        False, "--no-prune", help="Keep backups older than RETENTION_DAYS this time."
    ),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Back up the database (consistent snapshot); print the artifact URI."""
    from aegis.backup import service
    from aegis.cli.runtime import settings_for

    settings = settings_for()
    _wait_for(settings.effective_database_url)
    name = _actor(settings, actor, "aegis backup create")
    with _progress("backing up") as progress:
        result = service.create(
            settings=settings, actor=name, to=to, prune=not no_prune, progress=progress
        )
    manifest = result.manifest
    typer.echo(
        f"backup {manifest.backup_id}: {manifest.total_rows} rows in {len(manifest.tables)} "
        f"tables, {result.size} bytes{', encrypted' if result.encrypted else ''}, "
        f"sha256 {result.sha256[:16]}…, {result.elapsed_s:.2f} s",
        err=True,
    )
    for uri in result.pruned:
        typer.echo(f"pruned {uri} (older than {settings.retention_days} days)", err=True)
    typer.echo(result.uri)


@app.command("list")
def list_(
    from_: str | None = typer.Option(
        None, "--from", help="Object store URL or folder (default: BACKUP_DIR)."
    ),
) -> None:
    """List backups, oldest first."""
    from aegis.backup import service
    from aegis.cli.runtime import settings_for
    from aegis.storage.service import open_store, redact_url

    settings = settings_for()
    location = service.as_url(from_) if from_ else service.default_url(settings)
    # A folder named on the command line is only read, never made (a typo would be created).
    backups = service.list_backups(store=open_store(location, create=not from_))
    if not backups:
        typer.echo(f"no backups in {redact_url(location)}", err=True)
        return
    for backup in backups:
        kind = "encrypted" if backup.encrypted else "plain    "
        typer.echo(f"{backup.created_at:%Y-%m-%dT%H:%M:%SZ}  {kind}  {backup.uri}")


@app.command("prune")
def prune(
    from_: str | None = typer.Option(
        None, "--from", help="Object store URL or folder (default: BACKUP_DIR)."
    ),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Delete backups older than RETENTION_DAYS (never the newest one)."""
    from aegis.backup import service
    from aegis.cli.runtime import settings_for

    settings = settings_for()
    name = _actor(settings, actor, "aegis backup prune")
    deleted = service.prune_backups(settings=settings, actor=name, location=from_)
    for uri in deleted:
        typer.echo(f"pruned {uri}")
    typer.echo(
        f"{len(deleted)} backup(s) older than {settings.retention_days} days deleted", err=True
    )


@app.command("restore")
def restore(  # noqa: PLR0917 - Typer maps parameters to options
    artifact: str = typer.Argument(..., metavar="ARTIFACT_URI", help="s3://…, file://… or path."),
    to: str | None = typer.Option(
        None, "--to", help="Database URL to restore into (default: DATABASE_URL)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force_clean: bool = typer.Option(
        False, "--force-clean", help="Delete every Aegis row in the target first (asks first)."
    ),
    allow_unencrypted: bool = typer.Option(
        False,
        "--allow-unencrypted",
        help="Accept an unencrypted artifact although BACKUP_ENCRYPTION_KEY is set.",
    ),
    actor: str | None = typer.Option(
        None,
        "--actor",
        help=f"{ACTOR_HELP} Only with --to another database: DATABASE_URL's users are the "
        "ones checked.",
    ),
) -> None:
    """Restore a backup into an empty database, then verify its audit chain."""
    from aegis.backup import restore as restore_service
    from aegis.cli.runtime import settings_for
    from aegis.core.config import validate_database_url
    from aegis.core.errors import AegisError
    from aegis.database.core import redacted
    from aegis.storage.service import redact_url

    settings = settings_for()
    target = to or settings.effective_database_url
    if to:
        validate_database_url(to, name="--to")
    if actor is not None and target == settings.effective_database_url:
        raise AegisError(
            "--actor is checked against the users of DATABASE_URL, which this restore replaces: "
            "restore with --to another database, or without --actor (cli:local-operator)"
        )
    name = _actor(settings, actor, f"aegis backup restore {redact_url(artifact)}")
    where = redacted(target)
    if force_clean:
        question = f"--force-clean DELETES every Aegis row in {where} before restoring. Continue?"
    else:
        question = f"Restore {redact_url(artifact)} into {where}?"
    if not yes and not typer.confirm(question):
        typer.echo("aborted: nothing was changed", err=True)
        raise typer.Exit(130)
    # No connection to the target here: restore() fetches and verifies the artifact first and
    # only then waits for the database, so a missing or damaged backup touches nothing (waiting
    # first created an empty SQLite file at --to).
    with _progress("restoring") as progress:
        result = restore_service.restore(
            settings=settings,
            artifact=artifact,
            actor=name,
            target_url=target,
            force_clean=force_clean,
            allow_unencrypted=allow_unencrypted,
            progress=progress,
        )
    _print_restore(result)
    if not result.chain.ok:
        typer.echo(f"FAILED: audit chain of the restored database: {result.chain.problems[0]}")
        raise typer.Exit(1)


def _print_restore(result: RestoreResult) -> None:
    manifest = result.manifest
    typer.echo(
        f"restored backup {manifest.backup_id} ({manifest.created_at:%Y-%m-%dT%H:%M:%SZ}, "
        f"{manifest.source_dialect}, revision {', '.join(manifest.alembic_revisions)}): "
        f"{manifest.total_rows} rows in {len(manifest.tables)} tables into {result.target} "
        f"in {result.rto_s:.2f} s"
    )
    if result.chain.ok:
        typer.echo(f"audit chain intact: {result.chain.entries} entries")


@app.command("drill")
def drill(
    artifact: str | None = typer.Argument(
        None, metavar="[ARTIFACT_URI]", help="Backup to drill (default: the newest)."
    ),
    from_: str | None = typer.Option(
        None, "--from", help="Where to find the newest backup (default: BACKUP_DIR)."
    ),
    scratch_url: str | None = typer.Option(
        None,
        "--scratch-url",
        help="PostgreSQL server URL to create the throw-away database on, or the URL of a "
        "SQLite file that does not exist yet (default: a SQLite file in a temporary folder).",
    ),
    keep: bool = typer.Option(False, "--keep", help="Keep the restored database afterwards."),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Restore a backup into a throw-away database and check it; exit 0 only if all holds."""
    from aegis.backup import drill as drill_service
    from aegis.cli.runtime import settings_for
    from aegis.storage.service import redact_url

    settings = settings_for()
    command = "aegis backup drill" + (f" {redact_url(artifact)}" if artifact else "")
    report = drill_service.drill(
        settings=settings,
        actor=_actor(settings, actor, command),
        artifact=artifact,
        location=from_,
        scratch_url=scratch_url,
        keep=keep,
    )
    _print_drill(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_drill(report: DrillReport) -> None:
    echo = typer.echo
    echo(f"restore drill of {report.artifact}")
    manifest = report.manifest
    if manifest is not None:
        echo(
            f"  backup      {manifest.backup_id}, taken {manifest.created_at:%Y-%m-%dT%H:%M:%SZ} "
            f"on {manifest.source_dialect}, revision {', '.join(manifest.alembic_revisions)}, "
            f"{manifest.total_rows} rows in {len(manifest.tables)} tables"
        )
    echo(f"  scratch     {report.scratch}{' (kept)' if report.kept else ' (removed)'}")
    for label, key in (
        ("download", "download_s"),
        ("verify", "verify_s"),
        ("migrate", "migrate_s"),
        ("insert", "insert_s"),
        ("chain", "audit_verify_s"),
    ):
        if key in report.timings:
            echo(f"  {label:<11} {report.timings[key]:.3f} s")
    if "total_s" in report.timings:
        echo(f"  RTO         {report.rto_s:.3f} s (fetch → restored, migrated, verified database)")
    if manifest is not None:
        matching = sum(1 for t in report.tables if t.found == t.expected)
        echo(f"  tables      {matching}/{len(report.tables)} row counts match the manifest")
        checkpoints = (
            "not checked (no audit verification key)"
            if report.checkpoints is None
            else f"{report.checkpoints} signed checkpoint(s) match"
        )
        echo(f"  audit       {report.chain_entries} entries walked; {checkpoints}")
    if report.ok:
        echo("PASSED")
        return
    echo("FAILED")
    for problem in report.problems:
        echo(f"  - {problem}")
