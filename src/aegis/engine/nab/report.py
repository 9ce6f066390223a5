"""The Rich tables ``aegis engine eval-nab`` prints."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from aegis.engine.nab.runner import PUBLISHED_STANDARD, EvalReport


def render(console: Console, report: EvalReport, *, labels: Path | None, out_dir: Path) -> None:
    """Print the run summary, the three profiles, the categories and the scoreboard."""
    console.print(
        f"{report.files} files, {report.points:,} points run by [bold]{report.detector}[/]; "
        f"{report.points_per_second:,.0f} points/s per core; results in {out_dir / report.detector}"
    )
    if report.unscored:
        console.print(
            f"{len(report.unscored)} file(s) with no windows in the labels file (run, written, "
            f"not scored): {', '.join(report.unscored)}"
        )
    if not report.profiles:
        console.print(
            "nothing scored: no labels file" if labels is None else "nothing scored: no labels"
        )
        return
    console.print(profiles_table(report))
    console.print(categories_table(report))
    console.print(scoreboard_table(report))


def profiles_table(report: EvalReport) -> Table:
    table = Table(
        title=f"NAB scores: {report.scored_files} files, {report.windows} windows",
        title_justify="left",
    )
    for column in ("profile", "score", "threshold", "raw", "TP", "FP", "FN"):
        table.add_column(column, justify="left" if column == "profile" else "right")
    for name, result in report.profiles.items():
        table.add_row(
            name,
            f"{result.normalised:.1f}",
            f"{result.threshold:.4f}",
            f"{result.raw:.2f}",
            str(result.tp),
            str(result.fp),
            str(result.fn),
        )
    return table


def categories_table(report: EvalReport) -> Table:
    table = Table(title="standard profile by category", title_justify="left")
    for column in ("category", "files", "windows", "raw", "TP", "FP"):
        table.add_column(column, justify="left" if column == "category" else "right")
    for c in report.categories:
        table.add_row(
            c.category, str(c.files), str(c.windows), f"{c.raw:.2f}", str(c.tp), str(c.fp)
        )
    return table


def scoreboard_table(report: EvalReport) -> Table:
    """Our standard score among the published ones (which are on the whole 58-file corpus)."""
    ours = report.profiles["standard"].normalised
    rows = [*PUBLISHED_STANDARD, (f"Aegis {report.detector} (this run)", ours)]
    rows.sort(key=lambda row: -row[1])
    table = Table(
        title=(
            "NAB scoreboard, standard profile (published: whole corpus, 58 files; "
            f"this run: {report.scored_files} files)"
        ),
        title_justify="left",
    )
    table.add_column("detector")
    table.add_column("standard", justify="right")
    for name, score in rows:
        style = "bold green" if name.startswith("Aegis") else None
        table.add_row(name, f"{score:.1f}", style=style)
    return table
