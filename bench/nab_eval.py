"""NAB evaluation of the streaming detector: the three NAB profile scores and points/s per core.

    .venv/bin/python -m bench.nab_eval [--data DIR] [--labels FILE] [--detector aegis]

Without ``--data`` it uses the shared NAB copy (``../shared/data/nab`` beside the repository)
when present, else the copy in ``tests/data/nab``. Results files go to a temporary folder. The
throughput is points divided by the CPU time spent inside the detector (one process, one core),
the best of ``--repeat`` passes; the scores come from the first pass (scores are deterministic).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aegis.engine import detectors
from aegis.engine.nab import runner
from aegis.engine.nab.corpus import discover, read_series

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = (REPO.parent / "shared" / "data" / "nab", REPO / "tests" / "data" / "nab")


def _corpus(data: Path | None, labels: Path | None) -> tuple[Path, Path | None]:
    if data is None:
        root = next((c for c in CANDIDATES if (c / "data").is_dir()), None)
        if root is None:
            sys.exit("no NAB data: pass --data")
        data = root / "data"
    return data, labels if labels is not None else runner.default_labels(data)


def _throughput(data: Path, detector: str, repeat: int) -> tuple[int, float]:
    """Points and the best CPU seconds of ``repeat`` detector passes over the whole corpus."""
    series = [read_series(f.path) for f in discover(data)]
    points = sum(len(s) for s in series)
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for s in series:
            detectors.create(detector).score_series(s.timestamps, s.values)
        best = min(best, time.process_time() - started)
    return points, best


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path)
    parser.add_argument("--labels", type=Path)
    parser.add_argument("--detector", default=detectors.DEFAULT_DETECTOR)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    data, labels = _corpus(args.data, args.labels)

    with tempfile.TemporaryDirectory() as out:
        report = runner.run_eval(
            data_dir=data, out_dir=Path(out), labels=labels, detector=args.detector
        )
    points, seconds = _throughput(data, args.detector, max(args.repeat, 1))

    print(f"corpus      {data} ({report.files} files, {report.points:,} points)")
    print(f"labels      {labels} ({report.scored_files} files scored, {report.windows} windows)")
    cpu = _cpu_model()
    print(f"machine     {cpu}, Python {platform.python_version()}, numpy {np.__version__}")
    for name, result in report.profiles.items():
        print(
            f"{name:20s} {result.normalised:5.1f}  (threshold {result.threshold:.4f}, "
            f"TP {result.tp}, FP {result.fp}, FN {result.fn})"
        )
    rate = points / seconds
    print(f"throughput  {rate:,.0f} points/s per core (best of {args.repeat}, detector only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
