"""NAB's results format, so that NAB's own scorer can read what Aegis writes, unchanged.

``RESULTS_DIR/<detector>/<category>/<detector>_<file>.csv``, columns
``timestamp,value,anomaly_score,label``: timestamp and value exactly as read from the data file,
the score as the shortest decimal that reads back to the same float (so scoring the written file
and scoring the scores in memory agree bit for bit), and ``label`` 1 inside a labelled window.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aegis.engine.nab.corpus import csv_key, parse_timestamps, read_text
from aegis.engine.nab.errors import NabError

COLUMNS = ("timestamp", "value", "anomaly_score", "label")


def results_path(results_dir: Path, detector: str, key: str) -> Path:
    """Where the results of series ``<category>/<file>.csv`` go."""
    category, _, name = key.rpartition("/")
    folder = results_dir / detector / category if category else results_dir / detector
    return folder / f"{detector}_{name}"


def write_results(
    path: Path,
    *,
    timestamps: Sequence[str],
    values: Sequence[str],
    scores: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
) -> None:
    """Write one results file (its folder is created)."""
    n = len(timestamps)
    if not len(values) == len(scores) == len(labels) == n:
        raise NabError(f"{path}: columns of different lengths")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(
            zip(timestamps, values, map(repr, scores.tolist()), labels.tolist(), strict=True)
        )


@dataclass(frozen=True)
class ResultsFile:
    """One results file read back: its series key, timestamps and scores."""

    key: str
    timestamps: npt.NDArray[np.datetime64]
    scores: npt.NDArray[np.float64]


def read_results(path: Path, key: str) -> ResultsFile:
    """Read ``timestamp`` and ``anomaly_score`` from one results file (NaN where unreadable)."""
    try:
        reader = csv.reader(io.StringIO(read_text(path), newline=""))
        header = [h.strip().lower() for h in next(reader, [])]
        rows = [r for r in reader if r]
    except csv.Error as exc:
        raise NabError(f"{path} is not a CSV file: {exc}") from exc
    try:
        t_col, s_col = header.index("timestamp"), header.index("anomaly_score")
    except ValueError:
        raise NabError(f"{path} has no 'timestamp' and 'anomaly_score' columns") from None
    texts = [r[t_col] if len(r) > t_col else "" for r in rows]
    scores = np.full(len(rows), np.nan)
    for i, r in enumerate(rows):
        try:
            scores[i] = float(r[s_col])
        except (IndexError, ValueError):
            continue
    return ResultsFile(key=key, timestamps=parse_timestamps(texts), scores=scores)


def find_results(detector_dir: Path, detector: str) -> list[tuple[str, Path]]:
    """``(key, path)`` of every ``<detector>_<file>.csv[.gz|.xz]`` under one detector's folder."""
    if not detector_dir.is_dir():
        raise NabError(f"results directory {detector_dir} does not exist")
    prefix = f"{detector}_"
    found = []
    for path in sorted(detector_dir.rglob(f"{prefix}*")):
        if not path.is_file() or path.is_symlink():
            continue
        relative = path.relative_to(detector_dir)
        name = csv_key(relative.name)
        if name is None:
            continue
        category = relative.parent.as_posix()
        bare = name[len(prefix) :]
        found.append((bare if category == "." else f"{category}/{bare}", path))
    return found
