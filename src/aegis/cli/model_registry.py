"""``aegis model`` push, promote, approve, reject and list: the model registry, promotions with
four eyes. :mod:`aegis.cli.model` mounts these commands on its group."""

from __future__ import annotations

from pathlib import Path

import typer


def _machine_user() -> str:
    """Who ran a push that names no user: the OS user, recorded as ``cli:<OS user>`` (no
    username holds a ``:``); ``cli:local-operator`` when the OS gives no usable name (none at
    all, as for a container's UID without a passwd entry, or one of several lines or too long,
    taken from the environment)."""
    import getpass

    from aegis.cli.runtime import ACTOR_MAX, LOCAL_OPERATOR

    try:
        name = f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return LOCAL_OPERATOR
    return name if name.isprintable() and len(name) <= ACTOR_MAX else LOCAL_OPERATOR


def push(
    archive: Path = typer.Argument(..., help="A signed model archive (model.tar.gz)."),
    to: str = typer.Option(..., "--to", help="e.g. s3://bucket/model-archives/NAME/V/"),
    signature: Path | None = typer.Option(None, "--signature", help="Default ARCHIVE.sig."),
    key: list[Path] = typer.Option(
        None, "--key", help="Trusted key(s) (default: AEGIS_TRUSTED_KEYS)."
    ),
    actor: str | None = typer.Option(
        None,
        "--actor",
        help="Who is pushing: an enabled user with the operator role (audited). "
        "Default cli:<OS user>.",
    ),
) -> None:
    """Verify, upload archive and signature, and record the version (stage: staging)."""
    from aegis.audit.journal import AuditWriter
    from aegis.cli.model import load_keyset
    from aegis.cli.runtime import acting, check_actor, prepare_database
    from aegis.registry import catalog
    from aegis.registry.errors import ModelExists, ModelLocationTaken, RegistryError

    if actor is not None:
        check_actor(actor, "pushes")
    pusher = actor or _machine_user()
    keyset = load_keyset(key or None)
    settings, database = prepare_database()
    command = f"aegis model push {archive.name}"
    try:
        # operator: the role the API asks of whoever asks to move a version (there is no API
        # call for a push, which only adds one to staging)
        with acting(
            settings, database, actor, role="operator", resource=command, default=pusher
        ) as (session, _):
            row = catalog.push(
                session=session,
                archive=archive,
                signature=signature or archive.with_name(archive.name + ".sig"),
                to=to,
                keyset=keyset,
                actor=pusher,
            )
            typer.echo(
                f"pushed {row.name} {row.version} sha256:{row.digest} to {row.archive_uri}"
                f" (signed by {row.signer_key_id}; stage {row.stage})"
            )
    except (RegistryError, ModelExists, ModelLocationTaken) as exc:
        # An archive that does not verify was offered to the registry, or one that would replace
        # a version's archive: recorded in a transaction of its own (the push's is rolled back),
        # like a refused load.
        if isinstance(exc, RegistryError):
            data = {"reason": exc.code, "verification_result": f"refused: {exc.message}"}
        else:
            data = {"reason": exc.code, "verification_result": "verified", "detail": exc.message}
        AuditWriter(database, settings.audit_journal_path).record(
            category="model",
            event_type="model.push_refused",
            actor=pusher,
            resource=f"archive:{archive.name}"[:512],
            outcome="refused",
            data=data,
        )
        raise
    finally:
        database.dispose()


def promote(
    name: str = typer.Argument(...),
    version: str = typer.Argument(...),
    to: str = typer.Option("production", "--to", help="staging, production or archived."),
    actor: str = typer.Option(..., "--actor", help="Who asks (a user; audited)."),
) -> None:
    """Ask for a promotion; another user with the approver role must approve it."""
    from aegis.auth.errors import UserNotFound
    from aegis.cli.runtime import audit_refusal, check_actor, prepare_database, require_role
    from aegis.core.errors import Forbidden
    from aegis.registry import catalog

    check_actor(actor, "asks")
    settings, database = prepare_database()
    try:
        with database.unit_of_work() as session:
            require_role(session, actor, "operator")  # as the API's requester
            request = catalog.request_promotion(
                session=session, name=name, version=version, to=to, actor=actor
            )
            typer.echo(
                f"promotion request {request.id}: {name} {version} -> {to}, waiting for "
                f"an approver other than {actor} (aegis model approve {request.id})"
            )
    except (Forbidden, UserNotFound) as exc:  # no operator role, or no such user
        resource = f"aegis model promote {name} {version}"
        audit_refusal(settings, database, exc, actor=actor, resource=resource)
        raise
    finally:
        database.dispose()


def _decide(promotion_id: int, actor: str, comment: str, *, approve: bool) -> None:
    from aegis.auth.errors import UserNotFound
    from aegis.cli.runtime import (
        audit_refusal,
        check_actor,
        checked_text,
        prepare_database,
        require_role,
    )
    from aegis.core.errors import Forbidden
    from aegis.registry import catalog
    from aegis.registry.schemas import PromotionDecision

    comment = checked_text("--comment", comment, PromotionDecision, "comment")
    check_actor(actor, "decides")
    settings, database = prepare_database()
    try:
        with database.unit_of_work() as session:
            require_role(session, actor, "approver")
            if approve:
                row = catalog.approve(
                    session=session, promotion_id=promotion_id, actor=actor, comment=comment
                )
                typer.echo(f"approved: {row.name} {row.version} is now {row.stage}")
            else:
                catalog.reject(
                    session=session, promotion_id=promotion_id, actor=actor, comment=comment
                )
                typer.echo(f"rejected promotion request {promotion_id}")
    except (Forbidden, UserNotFound) as exc:  # four eyes, no approver role, no such user
        resource = f"aegis model {'approve' if approve else 'reject'} {promotion_id}"
        audit_refusal(settings, database, exc, actor=actor, resource=resource)
        raise
    finally:
        database.dispose()


def approve(
    promotion_id: int = typer.Argument(..., help="The promotion request's id."),
    actor: str = typer.Option(..., "--actor", help="An approver other than the requester."),
    comment: str = typer.Option("", "--comment"),
) -> None:
    """Approve a promotion (four eyes: not the requester; approver role required)."""
    _decide(promotion_id, actor, comment, approve=True)


def reject(
    promotion_id: int = typer.Argument(...),
    actor: str = typer.Option(..., "--actor"),
    comment: str = typer.Option("", "--comment"),
) -> None:
    """Reject a promotion request."""
    _decide(promotion_id, actor, comment, approve=False)


def list_models(name: str | None = typer.Option(None, "--name")) -> None:
    """Registered versions with stage, digest and signer."""
    from rich.console import Console
    from rich.table import Table

    from aegis.cli.runtime import open_current_database
    from aegis.registry import catalog

    _, database = open_current_database()
    table = Table("name", "version", "stage", "digest", "signer", "pushed by")
    try:
        with database.unit_of_work() as session:
            for row in catalog.list_versions(session=session, name=name):
                table.add_row(
                    row.name,
                    row.version,
                    row.stage,
                    row.digest[:16],
                    row.signer_key_id,
                    row.pushed_by,
                )
    finally:
        database.dispose()
    Console().print(table)
