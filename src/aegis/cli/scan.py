"""``aegis scan sdk``: report direct cloud-provider SDK use in runtime code."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Static checks on source trees.", no_args_is_help=True)

DEFAULT_PATHS = [Path("src")]


@app.command("sdk")
def sdk(
    paths: list[Path] = typer.Argument(None, help="Files or folders to scan (default: src)."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when anything is found."),
) -> None:
    """Find imports of provider SDKs (boto3, google.cloud, azure, oci, ...)."""
    from aegis.core.errors import AegisError
    from aegis.sdkscan import service

    try:
        findings = service.scan(paths or DEFAULT_PATHS)
    except service.ScanError as exc:
        raise AegisError(str(exc)) from None
    for finding in findings:
        typer.echo(str(finding))
    typer.echo(f"{len(findings)} finding(s)", err=True)
    if findings and strict:
        raise typer.Exit(1)
