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
        try:
            return value.encode()
        except UnicodeEncodeError:  # bytes the locale could not decode, kept as surrogates
            from aegis.registry.errors import KeyPasswordInvalid

            raise KeyPasswordInvalid(f"{PASSWORD_ENV} is not valid UTF-8") from None
    if sys.stdin.isatty():
        return str(
            typer.prompt("Key password", hide_input=True, confirmation_prompt=confirm)
        ).encode()
    from aegis.registry.errors import KeyPasswordInvalid

    if confirm:  # a new key: encrypted with the password it is given
        raise KeyPasswordInvalid(
            f"a new key is encrypted with a password: set {PASSWORD_ENV}, or run on a terminal "
            "to be asked for one"
        )
    raise KeyPasswordInvalid(
        f"the key is encrypted: set {PASSWORD_ENV}, or run on a terminal to be asked for it"
    )


@app.command("generate")
def generate(
    out: Path = typer.Option(Path(), "--out", help="Folder for cosign.key and cosign.pub."),
    force: bool = typer.Option(False, "--force", help="Replace existing key files."),
    password: str | None = typer.Option(
        None, envvar=PASSWORD_ENV, hidden=True, help="Key password (use COSIGN_PASSWORD)."
    ),
) -> None:
    """Write an encrypted cosign.key (password from COSIGN_PASSWORD) and cosign.pub."""
    from aegis.core.errors import AegisError
    from aegis.core.files import replace_together
    from aegis.registry import cosign_keys

    private_path, public_path = out / "cosign.key", out / "cosign.pub"
    existing = [p for p in (private_path, public_path) if p.exists() or p.is_symlink()]
    if existing and not force:
        raise AegisError(f"{existing[0]} exists; pass --force to replace it")
    for path in existing:
        if not path.is_symlink() and not path.is_file():
            raise AegisError(f"{path} is not a regular file; no key was written")
    secret = read_password(password, confirm=True)
    private_pem, public_pem = cosign_keys.generate_key_pair(secret)
    out.mkdir(parents=True, exist_ok=True)
    replace_together([(private_path, private_pem, 0o600), (public_path, public_pem, 0o644)])
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
