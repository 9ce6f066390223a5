"""``aegis keys``: model-signing key pairs in cosign's format."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(help="Model-signing keys (cosign format).", no_args_is_help=True)

PASSWORD_ENV = "COSIGN_PASSWORD"  # noqa: S105 - the variable's name, not a password


def read_password(value: str | None, *, confirm: bool) -> bytes:
    """The key password: COSIGN_PASSWORD, else a prompt on a terminal, else an error."""
    if value is not None:
        return value.encode()
    if sys.stdin.isatty():
        return str(
            typer.prompt("Key password", hide_input=True, confirmation_prompt=confirm)
        ).encode()
    from aegis.registry.errors import KeyPasswordInvalid

    raise KeyPasswordInvalid(f"the key is encrypted: set {PASSWORD_ENV}")


@app.command("generate")
def generate(
    out: Path = typer.Option(Path(), "--out", help="Folder for cosign.key and cosign.pub."),
    force: bool = typer.Option(False, "--force", help="Replace existing key files."),
    password: str | None = typer.Option(
        None, envvar=PASSWORD_ENV, hidden=True, help="Key password (use COSIGN_PASSWORD)."
    ),
) -> None:
    """Write an encrypted cosign.key (password from COSIGN_PASSWORD) and cosign.pub."""
    import os

    from aegis.core.errors import AegisError
    from aegis.registry import cosign_keys

    private_path, public_path = out / "cosign.key", out / "cosign.pub"
    existing = [p for p in (private_path, public_path) if p.exists()]
    if existing and not force:
        raise AegisError(f"{existing[0]} exists; pass --force to replace it")
    secret = read_password(password, confirm=True)
    private_pem, public_pem = cosign_keys.generate_key_pair(secret)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    private_path.chmod(0o600)
    public_path.write_bytes(public_pem)
    key_id = cosign_keys.key_id(cosign_keys.load_public_keys(public_pem)[0])
    typer.echo(f"wrote {private_path} and {public_path} (key id {key_id})")


@app.command("list")
def list_keys(
    key: list[Path] = typer.Option(
        None, "--key", help="Key files or folders (default: AEGIS_TRUSTED_KEYS)."
    ),
) -> None:
    """Show the trusted public keys and their ids."""
    from aegis.cli.model import load_keyset

    for trusted in load_keyset(key or None):
        typer.echo(f"{trusted.key_id}  {trusted.source}")
