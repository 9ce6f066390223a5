"""The engine's model directory: reproducible training and export, a loader that refuses
anything but the documented data, and the ``aegis engine train`` command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aegis.cli.main import run
from aegis.engine import model, scoring, synthetic
from aegis.engine.errors import ModelFormatError
from aegis.engine.schemas import Incident
from tests.support.processes import run_on_a_full_disk

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "model_registry" / "example_multimodal" / "0.1"


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    out = tmp_path / "model"
    model.export_model_dir(model.train(), out)
    return out


def test_training_twice_writes_the_same_bytes(tmp_path: Path) -> None:
    model.export_model_dir(model.train(), tmp_path / "a")
    model.export_model_dir(model.train(), tmp_path / "b")

    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert sorted(_files(tmp_path / "a")) == ["knowledge_base.json", "model.json", "priors.npy"]


def test_the_committed_example_model_is_what_training_writes(tmp_path: Path) -> None:
    model.export_model_dir(model.train(), tmp_path / "fresh")

    assert _files(tmp_path / "fresh") == _files(EXAMPLE), (
        "model_registry/example_multimodal/0.1 is stale: run "
        "`aegis engine train --out model_registry/example_multimodal/0.1`"
    )


def test_a_loaded_model_scores_like_the_one_that_was_exported(model_dir: Path) -> None:
    trained = model.train()
    loaded = model.load_model_dir(model_dir)
    incident = Incident.model_validate(synthetic.incident("bad_deploy", 2))

    a = scoring.score_incident(scoring.prepare(trained), incident)
    b = scoring.score_incident(scoring.prepare(loaded), incident)

    assert loaded.digest == trained.digest
    assert a.model_dump_json() == b.model_dump_json()


def test_the_train_command_writes_a_reproducible_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["engine", "train", "--out", str(tmp_path / "one")]) == 0
    assert run(["engine", "train", "--out", str(tmp_path / "two")]) == 0

    out = capsys.readouterr().out
    assert _files(tmp_path / "one") == _files(tmp_path / "two") == _files(EXAMPLE)
    assert "model example_multimodal 0.1 sha256:" in out


def test_train_over_a_folder_in_the_way_writes_nothing_and_says_why(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (model_dir / "priors.npy").unlink()
    (model_dir / "priors.npy").mkdir()
    before = _files(model_dir)

    assert run(["engine", "train", "--out", str(model_dir), "--version", "0.2"]) == 1

    err = capsys.readouterr().err
    assert err == f"error: {model_dir / 'priors.npy'} is a directory; the model was not written\n"
    assert _files(model_dir) == before  # model.json still says 0.1
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([*before, "priors.npy"])


def test_a_write_that_fails_part_way_leaves_the_old_model_whole(model_dir: Path) -> None:
    # a file-size limit between model.json (3 KiB) and knowledge_base.json (11 KiB): the second
    # file's write fails (EFBIG), as a full disk would, after the first has been written
    before = _files(model_dir)

    result = run_on_a_full_disk(
        [
            sys.executable,
            str(ROOT / "scripts" / "export_savedmodel.py"),
            "--out",
            str(model_dir),
            "--version",
            "0.2",
        ],
        limit=8192,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONDONTWRITEBYTECODE": "1"},
    )

    assert result.returncode == 1
    assert result.stderr == f"error: cannot write the model into {model_dir}: File too large\n"
    assert _files(model_dir) == before
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(before)


def test_the_export_script_is_the_train_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "export_savedmodel.py"),
            "--out",
            str(tmp_path / "m"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert _files(tmp_path / "m") == _files(EXAMPLE)


def test_train_folds_past_outcomes_into_the_priors(tmp_path: Path) -> None:
    history = tmp_path / "outcomes.json"
    history.write_text(
        json.dumps(
            [{"incident_kind": "oom", "action": "delete_pod", "successes": 0, "failures": 30}]
        )
    )

    assert run(["engine", "train", "--out", str(tmp_path / "m"), "--outcomes", str(history)]) == 0

    trained = model.load_model_dir(tmp_path / "m")
    row = trained.spec.recommender.rows.index("oom")
    col = trained.spec.recommender.actions.index("delete_pod")
    alpha, beta = trained.priors[row, col]
    assert alpha / (alpha + beta) < 0.15
    assert trained.digest != model.train().digest


def test_train_refuses_bad_input_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "outcomes.json"
    bad.write_text('[{"incident_kind": "oom", "action": "reboot", "successes": 1}]')

    assert run(["engine", "train", "--out", str(tmp_path / "m"), "--outcomes", str(bad)]) == 1
    assert run(["engine", "train", "--out", str(tmp_path / "m"), "--name", "Not Valid"]) == 1

    err = capsys.readouterr().err
    assert "error: " in err and "0.action" in err and "name" in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "empty file (expected a JSON list of outcomes)"),
        (" \n", "empty file (expected a JSON list of outcomes)"),
        ("[{", "invalid JSON: EOF while parsing an object at line 1 column 2"),
        ('{"incident_kind": "oom"}', "expected a JSON list of outcomes"),
    ],
)
def test_train_names_an_outcomes_file_that_holds_no_list_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    outcomes = tmp_path / "outcomes.json"
    outcomes.write_text(text)

    assert run(["engine", "train", "--out", str(tmp_path / "m"), "--outcomes", str(outcomes)]) == 1

    assert capsys.readouterr().err == f"error: {outcomes}: {said}\n"
    assert not (tmp_path / "m").exists()


# --- the loader refuses anything but the documented data ------------------------------------


def _refused(path: Path, match: str) -> None:
    with pytest.raises(ModelFormatError, match=match):
        model.load_model_dir(path)


def test_a_missing_file_is_named(model_dir: Path) -> None:
    (model_dir / "priors.npy").unlink()

    _refused(model_dir, "priors.npy is missing")


def test_a_symbolic_link_is_refused(model_dir: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    real.write_bytes((model_dir / "model.json").read_bytes())
    (model_dir / "model.json").unlink()
    (model_dir / "model.json").symlink_to(real)

    _refused(model_dir, "cannot open model.json")


def test_a_pickled_array_is_refused_without_being_unpickled(model_dir: Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"evil": 1}] * 2, dtype=object), allow_pickle=True)
    (model_dir / "priors.npy").write_bytes(buffer.getvalue())

    _refused(model_dir, "little-endian float64")


def test_an_array_header_claiming_a_huge_shape_is_refused_before_allocation(
    model_dir: Path,
) -> None:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4000000000, 5, 2), }"
    header += " " * (118 - len(header)) + "\n"
    (model_dir / "priors.npy").write_bytes(
        b"\x93NUMPY\x01\x00" + bytes([len(header), 0]) + header.encode()
    )

    _refused(model_dir, "shape")


def test_priors_that_are_not_positive_finite_counts_are_refused(model_dir: Path) -> None:
    trained = model.load_model_dir(model_dir)
    bad = np.array(trained.priors)
    bad[0, 0, 0] = np.nan
    buffer = io.BytesIO()
    np.save(buffer, bad, allow_pickle=False)
    (model_dir / "priors.npy").write_bytes(buffer.getvalue())

    _refused(model_dir, "finite")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(unknown=1), "unknown: Extra inputs"),
        (lambda d: d["detector"]["params"].update(warmup=-5), "detector"),
        (lambda d: d.update(format="other/v9"), "format"),
        (lambda d: d["recommender"].update(rows=["x", "fallback"]), "recommender.rows"),
        (lambda d: d["logs"].update(sim_th=7), "logs.sim_th"),
    ],
)
def test_an_invalid_spec_is_refused_naming_the_field(
    model_dir: Path, change: object, match: str
) -> None:
    spec = json.loads((model_dir / "model.json").read_text())
    change(spec)  # type: ignore[operator]
    (model_dir / "model.json").write_text(json.dumps(spec))

    _refused(model_dir, match)


def test_nan_in_json_is_refused(model_dir: Path) -> None:
    text = (model_dir / "model.json").read_text().replace('"w_value": 1.0', '"w_value": NaN')
    (model_dir / "model.json").write_text(text)

    _refused(model_dir, "NaN is not allowed")


def test_an_invalid_knowledge_base_is_refused(model_dir: Path) -> None:
    kb = json.loads((model_dir / "knowledge_base.json").read_text())
    kb["log_signatures"][0]["pattern"] = "([unclosed"
    (model_dir / "knowledge_base.json").write_text(json.dumps(kb))

    _refused(model_dir, "knowledge_base.json")


def test_an_oversized_file_is_refused(model_dir: Path) -> None:
    with (model_dir / "model.json").open("ab") as fh:
        fh.write(b" " * (model.MAX_JSON_BYTES + 1))

    _refused(model_dir, "larger than")


def test_export_will_not_write_through_a_symbolic_link(model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("keep me")
    (model_dir / "model.json").unlink()
    (model_dir / "model.json").symlink_to(target)

    with pytest.raises(ModelFormatError, match="symbolic link"):
        model.export_model_dir(model.train(), model_dir)
    assert target.read_text() == "keep me"
