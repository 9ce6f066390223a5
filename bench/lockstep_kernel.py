"""The lockstep kernel against the detector's own loop, on the series of one batch of incidents.

    .venv/bin/python -m bench.lockstep_kernel [--incidents 32] [--rounds 7] [--json FILE]

Builds ``--incidents`` synthetic incidents (``aegis.engine.synthetic``: six 240-point series
each, 15 s apart, as the inference benchmark sends them), stacks their series as the engine's
batch does, and times, alternating, in one process:

* the baseline: every series through the shipped model's detector on its own
  (``detectors.score_window``, what the engine runs for a series outside a lockstep group);
* the kernel: all of them at once (``lockstep.score_lockstep``).

It checks that both give the same scores (bit for bit) and prints milliseconds per batch (the
median of ``--rounds`` rounds), per incident and the ratio. ``--compare-with CHECKOUT`` also
times that checkout's ``src/aegis/engine/lockstep.py`` (with its ``lockstep_season.py`` where
it has one; both import only numpy) in the same rounds, so two versions of the kernel are
compared on one noisy machine at the same moment.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from aegis.engine import detectors, lockstep, scoring, series, synthetic
from aegis.engine import model as engine_model
from aegis.engine.schemas import Incident

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MODEL = ROOT / "model_registry" / "example_multimodal" / "0.1"
SEASON_MODULE = "aegis.engine.lockstep_season"  # what lockstep.py imports besides numpy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--compare-with", type=Path, default=None, metavar="CHECKOUT")
    args = parser.parse_args()

    loaded = (
        engine_model.load_model_dir(EXAMPLE_MODEL)
        if (EXAMPLE_MODEL / engine_model.SPEC_FILE).exists()
        else engine_model.train()
    )
    det = loaded.spec.detector
    prepared = scoring.prepare(loaded)
    docs = [synthetic.columnar(d) for d in synthetic.incidents(args.incidents, seed=7)]
    incidents = [Incident.model_validate(d) for d in docs]
    batch = series.build([s for i in incidents for s in i.series], prepared.families)
    lengths = batch.lengths.tolist()

    def baseline() -> np.ndarray:
        out = np.zeros(batch.values.shape)
        for row, n in enumerate(lengths):
            if n:
                out[row, :n] = detectors.score_window(
                    batch.times[row, :n],
                    batch.values[row, :n],
                    detector=det.name,
                    params=det.params,
                ).scores
        return out

    def kernel() -> np.ndarray:
        return lockstep.score_lockstep(batch.values, batch.times, det.params)

    runs: dict[str, Callable[[], np.ndarray]] = {
        "detector loop": baseline,
        "lockstep kernel": kernel,
    }
    if args.compare_with is not None:
        other = _module(args.compare_with / "src" / "aegis" / "engine" / "lockstep.py")
        runs[f"lockstep kernel of {args.compare_with}"] = lambda: other.score_lockstep(
            batch.values, batch.times, det.params
        )
    expected = baseline()
    for name, run in runs.items():
        if not np.array_equal(run(), expected):
            raise SystemExit(f"{name} and the detector disagree: the figures would mean nothing")
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            samples[name].append((time.perf_counter() - started) * 1000.0)
    medians = {name: statistics.median(v) for name, v in samples.items()}
    table = Table(
        title=f"{batch.rows} series of {args.incidents} incidents, {batch.values.size} points"
    )
    table.add_column("")
    table.add_column("ms per batch", justify="right")
    table.add_column("ms per incident", justify="right")
    table.add_column("points/s", justify="right")
    table.add_column("x detector loop", justify="right")
    points = int(batch.lengths.sum())
    for name, ms in medians.items():
        table.add_row(
            name,
            f"{ms:.2f}",
            f"{ms / args.incidents:.3f}",
            f"{points / ms * 1000.0:,.0f}",
            f"{medians['detector loop'] / ms:.2f}",
        )
    Console().print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"rows": batch.rows, "points": points, "incidents": args.incidents, **medians},
                indent=2,
            )
        )


def _module(path: Path) -> Any:
    """The kernel in ``path``, with the sibling module it imports taken from the same checkout."""
    sibling = path.with_name("lockstep_season.py")
    if not sibling.exists():  # a checkout from before the kernel's state moved out of lockstep.py
        return _load("compared_lockstep", path)
    ours = sys.modules[SEASON_MODULE]
    sys.modules[SEASON_MODULE] = _load("compared_lockstep_season", sibling)
    try:
        return _load("compared_lockstep", path)
    finally:
        sys.modules[SEASON_MODULE] = ours


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
