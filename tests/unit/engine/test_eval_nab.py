"""``aegis engine eval-nab``: every data file is run and written in NAB's layout; labelled ones
are scored; files without labels and unknown category folders never fail the run."""

from __future__ import annotations

import csv
import json
import lzma
from pathlib import Path

import numpy as np
import pytest

from aegis.cli.main import run
from aegis.engine import detectors
from aegis.engine.nab import runner

NAB = Path(__file__).resolve().parents[2] / "data" / "nab"


def _write_series(path: Path, n: int, spike_at: int | None = None, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-05-01T00:00:00")
    stamps = [str(start + np.timedelta64(300 * i, "s")).replace("T", " ") for i in range(n)]
    values = 20 + rng.normal(0, 1, n).round(3)
    if spike_at is not None:
        values[spike_at] += 40
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["timestamp,value", *(f"{t},{v:g}" for t, v in zip(stamps, values, strict=True))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return stamps


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """``nab/data`` with a labelled file, an unlabelled one, and a category NAB does not have."""
    data = tmp_path / "nab" / "data"
    stamps = _write_series(data / "realTiny" / "tiny_spike.csv", 1200, spike_at=900, seed=1)
    _write_series(data / "realTiny" / "no_labels.csv", 800, seed=2)
    _write_series(data / "extraCategory" / "extra.csv", 1000, spike_at=700, seed=3)
    labels = tmp_path / "nab" / "labels" / "combined_windows.json"
    labels.parent.mkdir(parents=True)
    labels.write_text(
        json.dumps(
            {
                "realTiny/tiny_spike.csv": [[f"{stamps[850]}.000000", f"{stamps[950]}.000000"]],
                "someOther/missing_file.csv": [],
            }
        ),
        encoding="utf-8",
    )
    return data


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def test_eval_nab_runs_every_file_writes_nab_layout_and_exits_zero(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"

    code = run(["engine", "eval-nab", "--data", str(corpus), "--out", str(out)])

    assert code == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv"))
    assert written == [
        "aegis/extraCategory/aegis_extra.csv",
        "aegis/realTiny/aegis_no_labels.csv",
        "aegis/realTiny/aegis_tiny_spike.csv",
    ]
    printed = capsys.readouterr().out
    assert "realTiny/no_labels.csv" in printed  # listed as not scored
    assert "standard" in printed and "ARTime" in printed


def test_results_file_has_nab_columns_and_the_input_rows(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    runner.run_eval(data_dir=corpus, out_dir=out, labels=runner.default_labels(corpus))

    source = _rows(corpus / "realTiny" / "tiny_spike.csv")
    result = _rows(out / "aegis" / "realTiny" / "aegis_tiny_spike.csv")

    assert result[0] == ["timestamp", "value", "anomaly_score", "label"]
    assert len(result) == len(source)
    assert [r[:2] for r in result[1:]] == source[1:]
    labels = [int(r[3]) for r in result[1:]]
    assert labels == [1 if 850 <= i <= 950 else 0 for i in range(1200)]
    scores = np.array([float(r[2]) for r in result[1:]])
    assert np.all((scores >= 0) & (scores <= 1))


def test_written_scores_read_back_exactly_as_the_detector_scored(
    corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    runner.run_eval(data_dir=corpus, out_dir=out, labels=None)
    from aegis.engine.nab.corpus import read_series

    series = read_series(corpus / "extraCategory" / "extra.csv")
    expected = detectors.create().score_series(series.timestamps, series.values)
    written = np.array(
        [float(r[2]) for r in _rows(out / "aegis" / "extraCategory" / "aegis_extra.csv")[1:]]
    )

    assert np.array_equal(written, expected)


def test_only_labelled_files_are_scored(corpus: Path, tmp_path: Path) -> None:
    report = runner.run_eval(
        data_dir=corpus, out_dir=tmp_path / "r", labels=runner.default_labels(corpus)
    )

    assert report.files == 3
    assert [p.key for p in report.prepared] == ["realTiny/tiny_spike.csv"]
    assert report.unscored == ["extraCategory/extra.csv", "realTiny/no_labels.csv"]
    assert report.profiles["standard"].tp == 1  # the spike inside the window is found


def test_without_any_labels_file_everything_is_written_and_nothing_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "bare"
    _write_series(data / "cat" / "a.csv", 300, seed=4)

    code = run(["engine", "eval-nab", "--data", str(data), "--out", str(tmp_path / "r")])

    assert code == 0
    assert (tmp_path / "r" / "aegis" / "cat" / "aegis_a.csv").is_file()
    assert "nothing scored" in capsys.readouterr().out


def test_explicit_labels_file_is_used(corpus: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"extraCategory/extra.csv": []}), encoding="utf-8")

    report = runner.run_eval(data_dir=corpus, out_dir=tmp_path / "r", labels=other)

    assert [p.key for p in report.prepared] == ["extraCategory/extra.csv"]


def test_compressed_data_files_are_read_and_named_as_csv(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _write_series(tmp_path / "plain.csv", 400, seed=5)
    (data / "zipped").mkdir(parents=True)
    (data / "zipped" / "z.csv.xz").write_bytes(lzma.compress((tmp_path / "plain.csv").read_bytes()))

    runner.run_eval(data_dir=data, out_dir=tmp_path / "r")

    assert (tmp_path / "r" / "aegis" / "zipped" / "aegis_z.csv").is_file()


def test_missing_data_directory_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["engine", "eval-nab", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)])

    assert code == 1
    assert capsys.readouterr().err.startswith("error: data directory")


def test_malformed_labels_file_is_one_error_line(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")

    code = run(
        ["engine", "eval-nab", "--data", str(corpus), "--out", str(tmp_path), "--labels", str(bad)]
    )

    assert code == 1
    assert "not JSON" in capsys.readouterr().err


def test_unknown_detector_is_one_error_line(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        ["engine", "eval-nab", "--data", str(corpus), "--out", str(tmp_path), "--detector", "x"]
    )

    assert code == 1
    assert "unknown detector 'x'" in capsys.readouterr().err


def test_file_without_header_columns_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "d"
    (data / "c").mkdir(parents=True)
    (data / "c" / "f.csv").write_text("a,b\n1,2\n", encoding="utf-8")

    code = run(["engine", "eval-nab", "--data", str(data), "--out", str(tmp_path / "r")])

    assert code == 1
    assert "no 'timestamp' and 'value' columns" in capsys.readouterr().err


def test_the_shipped_nab_copy_runs_end_to_end_on_one_category(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "realAdExchange").mkdir(parents=True)
    for source in sorted((NAB / "data" / "realAdExchange").glob("*.csv.xz"))[:2]:
        (data / "realAdExchange" / source.name).write_bytes(source.read_bytes())

    report = runner.run_eval(
        data_dir=data, out_dir=tmp_path / "r", labels=NAB / "labels" / "combined_windows.json"
    )

    assert report.scored_files == 2
    assert report.profiles["standard"].normalised > 0


def test_params_file_is_passed_to_the_detector(corpus: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"warmup": 1000}), encoding="utf-8")
    out = tmp_path / "r"

    code = run(
        ["engine", "eval-nab", "--data", str(corpus), "--out", str(out), "--params", str(params)]
    )

    assert code == 0
    rows = _rows(out / "aegis" / "realTiny" / "aegis_no_labels.csv")[1:]
    assert {r[2] for r in rows} == {"0.0"}  # 800 points, all inside the 1000-point warm-up


def test_bad_params_file_is_one_error_line(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"no_such_knob": 1}), encoding="utf-8")

    code = run(
        [
            "engine",
            "eval-nab",
            "--data",
            str(corpus),
            "--out",
            str(tmp_path),
            "--params",
            str(params),
        ]
    )

    assert code == 1
    assert "invalid parameters for detector 'aegis'" in capsys.readouterr().err
