"""``aegis engine``: the AI engine's offline commands."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="The AI engine: score its detector on NAB, train its model.", no_args_is_help=True
)


@app.command("eval-nab")
def eval_nab(
    data: Path = typer.Option(..., "--data", help="NAB data folder: <category>/<file>.csv."),
    out: Path = typer.Option(..., "--out", help="Results folder (NAB's results layout)."),
    labels: Path | None = typer.Option(
        None,
        "--labels",
        help="Windows file (default: DATA/../labels/combined_windows.json if it exists).",
    ),
    detector: str = typer.Option("aegis", "--detector", help="Detector name."),
    params: Path | None = typer.Option(
        None, "--params", help="JSON file of detector parameters (default: built-in)."
    ),
) -> None:
    """Run a detector over every NAB data file, write NAB results files, and score them."""
    import json

    from rich.console import Console

    from aegis.engine.nab import report as nab_report
    from aegis.engine.nab import runner
    from aegis.engine.nab.errors import NabError

    detector_params = None
    if params is not None:
        try:
            detector_params = json.loads(params.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise NabError(f"cannot read detector parameters {params}: {exc}") from exc
        if not isinstance(detector_params, dict):
            raise NabError(f"detector parameters {params} must be a JSON object")
    labels_file = labels if labels is not None else runner.default_labels(data)
    console = Console()
    with console.status("running the detector over the corpus...") as status:
        result = runner.run_eval(
            data_dir=data,
            out_dir=out,
            labels=labels_file,
            detector=detector,
            params=detector_params,
            on_file=lambda key, _n: status.update(f"scored {key}"),
        )
    nab_report.render(console, result, labels=labels_file, out_dir=out)


@app.command("train")
def train(
    out: Path = typer.Option(..., "--out", help="Model directory to write (created if needed)."),
    name: str = typer.Option("example_multimodal", "--name", help="Model name."),
    version: str = typer.Option("0.1", "--version", help="Model version."),
    outcomes: Path | None = typer.Option(
        None,
        "--outcomes",
        help="JSON list of past outcomes {incident_kind, action, successes, failures} "
        "to fold into the recommender's priors.",
    ),
) -> None:
    """Write the engine's model directory: knowledge base, detector defaults, priors.

    The same inputs always give the same bytes, so the directory can be rebuilt and checked
    before it is archived and signed (``aegis model build`` / ``sign``).
    """
    from pydantic import ValidationError

    from aegis.engine import model as engine_model
    from aegis.engine.errors import EngineError

    history = engine_model.read_outcomes(outcomes) if outcomes is not None else None
    try:
        trained = engine_model.train(name=name, version=version, outcomes=history)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise EngineError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    written = engine_model.export_model_dir(trained, out)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"model {trained.name} {trained.version} {trained.digest}")
