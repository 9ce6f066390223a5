"""``aegis policy``: signed bundles, GitOps sync, replay against history."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import typer

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from sqlalchemy.orm import Session

    from aegis.core.config import Settings
    from aegis.database.core import Database
    from aegis.policy.bundle import VerifiedBundle
    from aegis.policy.document import Policy
    from aegis.policy.errors import BundleError, BundleRollback

app = typer.Typer(
    help="Policies: export/apply signed bundles, sync a folder, replay.", no_args_is_help=True
)
ADMIN = "admin"  # the role the API asks of whoever changes the policies
ACTOR_HELP = (
    "Who makes the change (audited): an enabled user with the admin role, else refused "
    "(audited). Default: cli:local-operator."
)
MAX_SERIAL = 2**63 - 1  # aegis.policy.bundle.MAX_SERIAL, not imported: `aegis --help` stays fast


def _load_dir(folder: Path) -> list[Policy]:
    from aegis.core.errors import AegisError
    from aegis.policy.loader import parse_policies

    if not folder.is_dir():
        raise AegisError(f"{folder} is not a folder of policy files")
    policies: list[Policy] = []
    sources: dict[str, Path] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml"), *folder.glob("*.json")]):
        for policy in parse_policies(path.read_bytes(), source=str(path)):
            if policy.id in sources:  # which one won would depend on the file names
                raise AegisError(
                    f"policy {policy.id!r} appears twice: in {sources[policy.id]} and in {path}"
                )
            sources[policy.id] = path
            policies.append(policy)
    return policies


def _print_diff(diff: dict[str, list[str]]) -> bool:
    changed = False
    for kind, sign in (("added", "+"), ("changed", "~"), ("removed", "-")):
        for policy_id in diff[kind]:
            typer.echo(f"  {sign} {policy_id} ({kind})")
            changed = True
    if not changed:
        typer.echo("  no changes")
    return changed


@app.command("export")
def export(
    serial: int = typer.Option(
        ...,
        "--serial",
        min=1,
        max=MAX_SERIAL,
        help="The bundle's serial, signed with it: above every serial exported before.",
    ),
    out: str = typer.Option("policies.bundle.tar", "--out", "-o"),
) -> None:
    """Write every active policy as a bundle signed with the platform key.

    `policy apply` refuses a bundle whose serial is not above the highest it has applied."""
    from aegis.audit import keys
    from aegis.cli.runtime import open_current_database
    from aegis.core.errors import AegisError
    from aegis.core.files import write_whole
    from aegis.policy import service
    from aegis.policy.bundle import export_bundle, policy_set_digest

    if out.endswith("/"):  # a Path would drop the slash and write a file named like the folder
        raise AegisError(f"--out {out} ends with /, a folder: it must name the bundle file")
    settings, database = open_current_database()
    try:
        with database.unit_of_work() as session:
            policies = service.active_policies(session=session)
    finally:
        database.dispose()
    key = keys.load_or_create_private_key(settings.effective_audit_signing_key_file)
    write_whole(Path(out), export_bundle(policies, key, serial=serial))
    typer.echo(
        f"wrote {out}: serial {serial}, {len(policies)} policies,"
        f" digest {policy_set_digest(policies)}"
    )


@app.command("apply")
def apply(  # noqa: PLR0917 - Typer maps parameters to options
    bundle: Path = typer.Argument(..., help="A bundle made by `aegis policy export`."),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Refuse a bundle whose signature or digest is wrong."
    ),
    key: Path | None = typer.Option(None, "--key", help="Trusted public key (PEM)."),
    yes: bool = typer.Option(False, "--yes", help="Apply without asking."),
    allow_rollback: bool = typer.Option(
        False,
        "--allow-rollback",
        help="Apply a bundle whose serial is not above the highest applied, or that has none"
        " (an older set); audited.",
    ),
    actor: str | None = typer.Option(None, "--actor", help=ACTOR_HELP),
) -> None:
    """Make the active set equal the bundle's policies, after showing the diff.

    A bundle whose serial is not above the highest one applied is refused (a rollback) unless
    --allow-rollback is given; either way it is audited."""
    from aegis.audit import keys
    from aegis.cli.runtime import check_actor, prepare_database, settings_for
    from aegis.core.errors import AegisError
    from aegis.policy.errors import BundleRollback

    if not verify:
        raise AegisError("unsigned policy bundles are not applied; drop --no-verify")
    if actor is not None:
        check_actor(actor, "applies the bundle")
    settings = settings_for()
    public = keys.load_public_key(key or settings.effective_audit_verify_key_file)
    data = bundle.read_bytes()
    change = Change(settings, actor, f"aegis policy apply {bundle.name}")
    _, database = prepare_database(settings)
    try:
        # who it is, before the bundle: a refused bundle is audited as that user's
        name = change.checked(database)
        verified = _verified(settings, database, bundle, data, public, actor=name)
        try:
            _apply_bundle(database, verified, change, yes=yes, allow_rollback=allow_rollback)
        except BundleRollback as exc:
            _audit_refusal(settings, database, verified, exc, actor=name)
            hint = "to apply it anyway, pass --allow-rollback (audited)"
            raise AegisError(f"{exc.message}; {hint}", code=exc.code) from None
    finally:
        database.dispose()


class Change(NamedTuple):
    """A change to the policies asked for by ``actor`` (``--actor``, or nobody named), who must
    hold the admin role; ``resource``, the command, is what a refusal's audit record names."""

    settings: Settings
    actor: str | None
    resource: str

    def acting(self, database: Database) -> AbstractContextManager[tuple[Session, str]]:
        """The change's unit of work, and the name its audit records give (runtime.acting)."""
        from aegis.cli.runtime import acting

        return acting(self.settings, database, self.actor, role=ADMIN, resource=self.resource)

    def checked(self, database: Database) -> str:
        """The actor checked on its own, before the diff and the question (runtime.act_as)."""
        from aegis.cli.runtime import act_as

        return act_as(self.settings, database, self.actor, role=ADMIN, resource=self.resource)


def _verified(
    settings: Settings,
    database: Database,
    path: Path,
    data: bytes,
    public: Ed25519PublicKey,
    *,
    actor: str,
) -> VerifiedBundle:
    from aegis.policy.bundle import verify_bundle
    from aegis.policy.errors import BundleError

    try:
        return verify_bundle(data, [public])  # refuses before touching the policies
    except BundleError as exc:
        _audit_bad_bundle(settings, database, path, data, exc, actor=actor)
        raise


def _apply_bundle(
    database: Database, bundle: VerifiedBundle, change: Change, *, yes: bool, allow_rollback: bool
) -> None:
    from aegis.policy import service

    with database.unit_of_work() as session:
        highest = service.check_bundle(
            session=session, bundle=bundle, allow_rollback=allow_rollback
        )
        diff = service.plan(session=session, policies=bundle.policies)
    typer.echo(f"bundle serial {bundle.serial or 'none (format v1)'}; highest applied {highest}")
    if bundle.serial is None or bundle.serial <= highest:
        typer.echo("  this is an older set: applied only because of --allow-rollback (audited)")
    typer.echo("changes:")
    # A bundle with no changes is still applied: its serial is recorded.
    if _print_diff(diff) and not yes and not typer.confirm("apply these changes?"):
        raise typer.Exit(1)
    with change.acting(database) as (session, actor):
        service.apply_bundle(
            session=session, bundle=bundle, actor=actor, allow_rollback=allow_rollback
        )
        _, digest = service.active_set(session=session)
    typer.echo(f"applied; active set digest {digest}")


def _audit_refusal(
    settings: Settings,
    database: Database,
    bundle: VerifiedBundle,
    exc: BundleRollback,
    *,
    actor: str,
) -> None:
    """A bundle refused as a rollback, audited in a transaction of its own (the apply's is
    rolled back)."""
    from aegis.audit.journal import AuditWriter
    from aegis.policy import service

    AuditWriter(database, settings.audit_journal_path).record(
        category="policy",
        event_type="policy.bundle_refused",
        actor=actor,
        resource=f"policy-bundle:{bundle.digest}",
        outcome="refused",
        data=service.bundle_audit_data(bundle, exc.highest) | {"reason": exc.code},
    )


def _audit_bad_bundle(
    settings: Settings,
    database: Database,
    path: Path,
    data: bytes,
    exc: BundleError,
    *,
    actor: str,
) -> None:
    """A bundle refused for its signature, digest or format: someone offered policies no trusted
    key vouches for. Audited like a refused model push (``model.push_refused``), in a transaction
    of its own; nothing from the bundle is read into the store."""
    import hashlib

    from aegis.audit.journal import AuditWriter

    AuditWriter(database, settings.audit_journal_path).record(
        category="policy",
        event_type="policy.bundle_refused",
        actor=actor,
        resource=f"policy-bundle-file:{path.name}"[:512],
        outcome="refused",
        data={
            "reason": exc.code,
            "detail": exc.message,
            "file_sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        },
    )


def _apply(
    database: Database, policies: list[Policy], change: Change, *, yes: bool, kind: str
) -> None:
    from aegis.policy import service

    try:
        change.checked(database)  # a named actor without the role: refused before the diff
        with database.unit_of_work() as session:
            diff = service.plan(session=session, policies=policies)
        typer.echo("changes:")
        if not _print_diff(diff):
            return
        if not yes and not typer.confirm("apply these changes?"):
            raise typer.Exit(1)
        with change.acting(database) as (session, actor):
            service.replace_all(session=session, policies=policies, actor=actor, change=kind)
            _, digest = service.active_set(session=session)
    finally:
        database.dispose()
    typer.echo(f"applied; active set digest {digest}")


@app.command("sync")
def sync(
    folder: Path = typer.Argument(..., help="A folder of YAML/JSON policy files (git)."),
    yes: bool = typer.Option(False, "--yes", help="Apply without asking."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show the diff."),
    actor: str | None = typer.Option(
        None, "--actor", help=f"{ACTOR_HELP} Not needed with --dry-run."
    ),
) -> None:
    """Make the active set equal a folder of policy files (GitOps), showing the diff first."""
    from aegis.cli.runtime import check_actor, open_current_database, prepare_database
    from aegis.policy import service

    if actor is not None:
        check_actor(actor, "syncs the policies")
    policies = _load_dir(folder)
    if dry_run:  # a read: the schema is left as it is
        _, database = open_current_database()
        try:
            with database.unit_of_work() as session:
                _print_diff(service.plan(session=session, policies=policies))
        finally:
            database.dispose()
        return
    settings, database = prepare_database()
    _apply(database, policies, Change(settings, actor, "aegis policy sync"), yes=yes, kind="sync")


def parse_since(value: str) -> datetime:
    from aegis.core.errors import AegisError

    refused = AegisError(f"--since {value[:40]!r}: use e.g. 30d, 12h or an ISO date")
    match = re.fullmatch(r"(\d{1,9})([dhm])", value)
    if match:
        amount, unit = int(match[1]), match[2]
        delta = {
            "d": timedelta(days=amount),
            "h": timedelta(hours=amount),
            "m": timedelta(minutes=amount),
        }[unit]
        try:
            return datetime.now(UTC) - delta
        except OverflowError:  # before year 1
            return datetime.min.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise refused from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command("replay")
def replay(
    since: str = typer.Option("30d", "--since", help="30d, 12h, 90m or an ISO date."),
    policies: Path | None = typer.Option(
        None, "--policies", help="Candidate policy folder (default: active set)."
    ),
    show_all: bool = typer.Option(False, "--all", help="List unchanged decisions too."),
) -> None:
    """Evaluate a candidate policy set against every past action request; show what changes."""
    from rich.console import Console
    from rich.table import Table

    from aegis.actions.replay import replay as run_replay
    from aegis.cli.runtime import open_current_database
    from aegis.policy import service
    from aegis.policy.engine import PolicySet

    start = parse_since(since)
    _, database = open_current_database()
    try:
        with database.unit_of_work() as session:
            candidate = (
                PolicySet(_load_dir(policies))
                if policies
                else service.active_set(session=session)[0]
            )
            rows = run_replay(session=session, candidate=candidate, since=start)
    finally:
        database.dispose()
    table = Table("when", "action", "target", "by", "was", "would be", "why")
    changed = [r for r in rows if r.changed]
    for row in rows if show_all else changed:
        table.add_row(
            row.created_at.strftime("%Y-%m-%d %H:%M"),
            row.action,
            row.target,
            row.requested_by,
            row.recorded,
            row.candidate,
            row.reason,
        )
    Console().print(table)
    typer.echo(f"{len(rows)} requests replayed, {len(changed)} decisions would change")
