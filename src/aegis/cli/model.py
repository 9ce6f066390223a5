"""``aegis model``: build, sign and verify model archives and model directories; the registry's
commands (push, promote, approve, reject, list) are in :mod:`aegis.cli.model_registry`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aegis.cli import model_registry
from aegis.cli.keys import PASSWORD_ENV, read_password

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

    from aegis.registry.keyset import KeySet

app = typer.Typer(
    help="Signed model archives (cosign) and directories (OpenSSF OMS).", no_args_is_help=True
)


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A Rich progress bar on a terminal; nothing otherwise."""
    if not sys.stderr.isatty() or total <= 0:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def load_keyset(keys: list[Path] | None) -> KeySet:
    """``--key`` files/folders, else the configured trusted keys (AEGIS_TRUSTED_KEYS)."""
    from aegis.registry.keyset import KeySet, keyset_from_settings, load_keyset_path

    if keys:
        collected = KeySet([k for path in keys for k in load_keyset_path(path)])
        return collected.require_nonempty()
    from aegis.core.config import read_settings

    # Only the trusted-keys setting is needed: no data directory, database or secrets.
    return keyset_from_settings(read_settings())


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@app.command("build")
def build(
    directory: Path = typer.Argument(..., help="The model directory."),
    name: str = typer.Option(..., "--name", help="Model name, e.g. example_multimodal."),
    version: str = typer.Option(..., "--version", help="Model version, e.g. 0.1."),
    out: Path = typer.Option(Path("model.tar.gz"), "--out", help="Archive to write."),
) -> None:
    """Package DIRECTORY as a reproducible model.tar.gz with manifest.json."""
    from aegis.registry.archive import build_archive

    _check_engine_model(directory, name, version)
    with _progress("building", 2 * _dir_size(directory)) as progress:
        built = build_archive(directory, out, name=name, version=version, progress=progress)
    typer.echo(
        f"built {built.path} ({len(built.manifest.files)} files, {built.size} bytes, "
        f"sha256 {built.sha256})"
    )


def _check_engine_model(directory: Path, name: str, version: str) -> None:
    """An engine model's ``model.json`` names the model and version the archive is built as:
    the engine refuses to load one that does not, so it is refused here, before it is signed,
    pushed and promoted. Other directories are packaged under any name."""
    import json

    from aegis.core.errors import AegisError
    from aegis.engine.model import FORMAT, SPEC_FILE

    try:
        spec = json.loads((directory / SPEC_FILE).read_bytes())
    except (OSError, ValueError):
        return  # no engine model here (or one whose own checks refuse it)
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        return
    held = (spec.get("name"), spec.get("version"))
    if held != (name, version):
        raise AegisError(
            f"{directory / SPEC_FILE} holds model {held[0]} {held[1]}, not {name} {version}: "
            "build it as model.json says, or train it again under that name and version "
            "(aegis engine train --name --version)"
        )


@app.command("sign")
def sign(  # noqa: PLR0917 - Typer maps parameters to options
    target: Path = typer.Argument(..., help="A model archive, or a model directory (OMS)."),
    key: Path = typer.Option(..., "--key", help="cosign.key (encrypted) or a PEM private key."),
    fmt: str = typer.Option(
        "auto", "--format", help="blob (cosign sign-blob), oms (OpenSSF Model Signing) or auto."
    ),
    signature: Path | None = typer.Option(
        None, "--signature", help="Output (default ARCHIVE.sig; model.sig for oms)."
    ),
    ignore_paths: list[Path] = typer.Option(
        None, "--ignore-paths", help="oms: paths left out of the signature."
    ),
    password: str | None = typer.Option(
        None, envvar=PASSWORD_ENV, hidden=True, help="Key password (use COSIGN_PASSWORD)."
    ),
) -> None:
    """Sign an archive (cosign blob format) or a directory (OMS bundle)."""
    from aegis.core.errors import AegisError
    from aegis.registry import cosign_keys, oms
    from aegis.registry.service import sign_archive

    kind = fmt if fmt != "auto" else ("oms" if target.is_dir() else "blob")
    if kind not in {"blob", "oms"}:
        raise AegisError(f"unknown --format {fmt!r}: use blob, oms or auto")
    private_key = _load_private_key(key, password)
    if kind == "oms":
        if not target.is_dir():
            raise AegisError(f"--format oms signs a model directory; {target} is not one")
        written = oms.sign_directory(
            target,
            private_key,
            signature=signature or oms.DEFAULT_SIGNATURE,
            ignore_paths=ignore_paths or (),
        )
    else:
        if not target.is_file():
            raise AegisError(f"{target} is not a file; sign a directory with --format oms")
        written = sign_archive(target, private_key, out=signature)
    key_id = cosign_keys.key_id(private_key.public_key())
    typer.echo(f"signed {target} -> {written} (key id {key_id})")


def _load_private_key(path: Path, password: str | None) -> EllipticCurvePrivateKey:
    from aegis.registry import cosign_keys
    from aegis.registry.errors import KeyInvalid

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyInvalid(f"cannot read key {path}: {exc.strerror}") from None
    encrypted = any("ENCRYPTED" in block.type for block in cosign_keys.pem_blocks(data))
    secret = read_password(password, confirm=False) if encrypted else None
    return cosign_keys.load_private_key(data, secret)


@app.command("verify")
def verify(
    target: Path = typer.Argument(..., help="A model archive, or a model directory (OMS)."),
    signature: Path | None = typer.Option(
        None, "--signature", help="Default ARCHIVE.sig; model.sig for a directory."
    ),
    key: list[Path] = typer.Option(
        None, "--key", help="Trusted public key file(s) (default: AEGIS_TRUSTED_KEYS)."
    ),
    ignore_paths: list[Path] = typer.Option(
        None, "--ignore-paths", help="directory: paths left out of the check."
    ),
) -> None:
    """Check the signature, then the content; print 'verified' and exit 0 only if all hold."""
    keyset = load_keyset(key or None)
    if target.is_dir():
        from aegis.registry import oms

        result = oms.verify_directory(
            target,
            keyset,
            signature=signature or oms.DEFAULT_SIGNATURE,
            ignore_paths=ignore_paths or (),
        )
        typer.echo("verified")
        typer.echo(
            f"{target}: {len(result.resources)} files, key {result.key_id}, "
            f"digest {result.root_digest}",
            err=True,
        )
        return
    from aegis.registry.service import verify_archive
    from aegis.registry.signing import MAX_SIGNATURE_BYTES

    sig_path = signature or target.with_name(target.name + ".sig")
    sig = _read_signature(sig_path, MAX_SIGNATURE_BYTES)
    with _progress("verifying", target.stat().st_size) as progress:
        verified = verify_archive(target, sig, keyset, progress=progress)
    typer.echo("verified")
    typer.echo(
        f"{verified.manifest.name} {verified.manifest.version}: "
        f"{len(verified.manifest.files)} files, key {verified.key_id}, sha256 {verified.digest}",
        err=True,
    )


def _read_signature(path: Path, limit: int) -> bytes:
    from aegis.registry.errors import SignatureInvalid

    try:
        with path.open("rb") as fh:
            return fh.read(limit + 1)
    except OSError as exc:
        raise SignatureInvalid(f"cannot read signature {path}: {exc.strerror}") from None


@app.command("extract")
def extract(
    archive: Path = typer.Argument(..., help="A signed model archive."),
    dest: Path = typer.Argument(..., help="Folder to create (must be absent or empty)."),
    signature: Path | None = typer.Option(None, "--signature", help="Default ARCHIVE.sig."),
    key: list[Path] = typer.Option(
        None, "--key", help="Trusted public key file(s) (default: AEGIS_TRUSTED_KEYS)."
    ),
) -> None:
    """Verify and unpack in one pass; DEST appears only when every check held."""
    from aegis.registry.service import verify_and_extract
    from aegis.registry.signing import MAX_SIGNATURE_BYTES

    keyset = load_keyset(key or None)
    sig = _read_signature(
        signature or archive.with_name(archive.name + ".sig"), MAX_SIGNATURE_BYTES
    )
    with _progress("extracting", archive.stat().st_size) as progress:
        verified = verify_and_extract(archive, sig, keyset, dest, progress=progress)
    typer.echo(f"verified and extracted {len(verified.manifest.files)} files into {dest}")


# The registry's commands: push, promote with four eyes, list (aegis.cli.model_registry).
app.command("push")(model_registry.push)
app.command("promote")(model_registry.promote)
app.command("approve")(model_registry.approve)
app.command("reject")(model_registry.reject)
app.command("list")(model_registry.list_models)
