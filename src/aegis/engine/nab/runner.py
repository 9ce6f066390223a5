"""Run a detector over a NAB corpus, write NAB results files, and score them.

Every data file found is run and written; a file with no entry in the windows file is not scored
(it is listed in the report) and never fails the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aegis.engine.detectors import DEFAULT_DETECTOR, create
from aegis.engine.nab import scoring
from aegis.engine.nab.corpus import Windows, discover, in_windows, load_windows, read_series
from aegis.engine.nab.errors import NabError
from aegis.engine.nab.results import find_results, read_results, results_path, write_results

# The NAB scoreboard (v1.1, whole corpus: 58 files, 116 windows), standard profile.
PUBLISHED_STANDARD: tuple[tuple[str, float], ...] = (
    ("ARTime", 74.9),
    ("Numenta HTM", 70.1),
    ("CAD OSE", 69.9),
    ("earthgecko Skyline", 58.2),
    ("KNN CAD", 58.0),
    ("Relative Entropy", 54.6),
    ("Random Cut Forest", 51.7),
    ("Twitter ADVec", 47.1),
    ("Windowed Gaussian", 39.6),
    ("random", 16.8),
    ("null", 0.0),
)


@dataclass(frozen=True)
class CategoryScore:
    """One category's share of the standard profile at the corpus threshold."""

    category: str
    files: int
    windows: int
    raw: float
    tp: int
    fp: int


@dataclass
class EvalReport:
    """What one evaluation did and scored."""

    detector: str
    files: int = 0
    points: int = 0
    detector_seconds: float = 0.0  # CPU time spent inside the detector
    unscored: list[str] = field(default_factory=list)
    prepared: list[scoring.PreparedFile] = field(default_factory=list)
    profiles: dict[str, scoring.ProfileResult] = field(default_factory=dict)
    categories: list[CategoryScore] = field(default_factory=list)

    @property
    def scored_files(self) -> int:
        return len(self.prepared)

    @property
    def windows(self) -> int:
        return sum(p.n_windows for p in self.prepared)

    @property
    def points_per_second(self) -> float:
        return self.points / self.detector_seconds if self.detector_seconds > 0 else 0.0


def default_labels(data_dir: Path) -> Path | None:
    """NAB's layout: ``DATA_DIR/../labels/combined_windows.json``, when it exists."""
    candidate = data_dir.resolve().parent / "labels" / "combined_windows.json"
    return candidate if candidate.is_file() else None


def run_eval(
    *,
    data_dir: Path,
    out_dir: Path,
    labels: Path | None = None,
    detector: str = DEFAULT_DETECTOR,
    params: dict[str, Any] | None = None,
    on_file: Callable[[str, int], None] | None = None,
) -> EvalReport:
    """Run ``detector`` over every data file under ``data_dir``, write and score the results."""
    files = discover(data_dir)
    if not files:
        raise NabError(f"no data files (*.csv) under {data_dir}")
    create(detector, params)  # fail on a bad name or bad params before any work
    windows = load_windows(labels) if labels is not None else {}
    report = EvalReport(detector=detector)
    for data_file in files:
        series = read_series(data_file.path)
        started = time.process_time()
        scores = create(detector, params).score_series(series.timestamps, series.values)
        report.detector_seconds += time.process_time() - started
        file_windows: Windows | None = windows.get(data_file.key)
        label = in_windows(series.timestamps, file_windows or [])
        write_results(
            results_path(out_dir, detector, data_file.key),
            timestamps=series.timestamp_text,
            values=series.value_text,
            scores=scores,
            labels=label,
        )
        report.files += 1
        report.points += len(series)
        if file_windows is None:
            report.unscored.append(data_file.key)
        else:
            report.prepared.append(
                scoring.prepare_file(data_file.key, series.timestamps, scores, file_windows)
            )
        if on_file is not None:
            on_file(data_file.key, len(series))
    _score(report)
    return report


def score_results(*, detector_dir: Path, detector: str, labels: Path) -> EvalReport:
    """Score results files already written (by Aegis or by any NAB detector) in NAB's layout."""
    windows = load_windows(labels)
    report = EvalReport(detector=detector)
    for key, path in find_results(detector_dir, detector):
        results = read_results(path, key)
        report.files += 1
        report.points += len(results.scores)
        if key not in windows:
            report.unscored.append(key)
            continue
        report.prepared.append(
            scoring.prepare_file(key, results.timestamps, results.scores, windows[key])
        )
    if not report.files:
        raise NabError(f"no {detector}_*.csv results under {detector_dir}")
    _score(report)
    return report


def _score(report: EvalReport) -> None:
    if not report.prepared:
        return
    report.profiles = {
        name: scoring.optimise(report.prepared, profile)
        for name, profile in scoring.PROFILES.items()
    }
    standard = scoring.PROFILES["standard"]
    threshold = report.profiles["standard"].threshold
    by_category: dict[str, list[scoring.FileScore]] = {}
    for prepared in report.prepared:
        category = prepared.key.rpartition("/")[0] or "."
        by_category.setdefault(category, []).append(
            scoring.score_file(prepared, standard, threshold)
        )
    report.categories = [
        CategoryScore(
            category=category,
            files=len(scores),
            windows=sum(s.windows for s in scores),
            raw=sum(s.raw for s in scores),
            tp=sum(s.tp for s in scores),
            fp=sum(s.fp for s in scores),
        )
        for category, scores in sorted(by_category.items())
    ]
