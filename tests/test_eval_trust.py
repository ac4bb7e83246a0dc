"""Issue 14, items 8 and 11: `eval` names the checkpoint it looked for, `ensemble --greedy` says why it stopped,
and `predict` writes ids the way the run's training CSV does (so a submission joins back to its label file)."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from console.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder holding this module's trained runs and data, with the environment pointed at it while training."""
    folder = tmp_path_factory.mktemp("trust")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGCLS_RUNS_DIR", str(folder / "runs"))
        patch.setenv("IMGCLS_PRESETS_DIR", str(folder / "user-presets"))
        patch.setenv("IMGCLS_DATA_DIR", str(folder / "data"))
        patch.setenv("IMGCLS_OFFLINE", "1")
        yield folder


def _train(home: Path, overrides: list[str]) -> Path:
    """A finished quickstart run (1-3 epochs on little data) under `home`/runs."""
    from engine.presets import resolve_experiment
    from engine.runner import start_run

    status = start_run(resolve_experiment("quickstart", overrides), home / "runs")
    assert status["state"] == "finished"
    return Path(status["run_dir"])


@pytest.fixture(scope="module")
def digits_template(home: Path) -> Path:
    """A 3-epoch digits run with checkpoints epoch-001..003, best and last (trained once)."""
    return _train(home, ["data.limit=300", "train.epochs=3", "train.checkpoint.every=1", "name=digits"])


@pytest.fixture
def digits_run(digits_template: Path, isolated_dirs: Path) -> Path:
    """This test's own copy of the digits run, in its runs folder."""
    target = isolated_dirs / "runs" / digits_template.name
    shutil.copytree(digits_template, target, ignore=shutil.ignore_patterns(".lock"))
    return target


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), terminal_width=200)
    return result.exit_code, result.stdout, result.stderr


# ---------------------------------------------------------------- (a) eval names the checkpoint it looked for

def test_eval_of_a_run_without_checkpoints_names_best_the_default(digits_run: Path) -> None:
    for folder in (digits_run / "checkpoints").iterdir():
        shutil.rmtree(folder)
    code, _, err = _invoke("eval", digits_run.name)
    assert code != 0 and err.count("\n") == 1, err
    assert "'best' (the default) or 'last'" in err and "no checkpoints at all" in err
    code, _, err = _invoke("eval", f"{digits_run.name}:epoch-002")
    assert code != 0 and "no checkpoint 'epoch-002'" in err and "no checkpoints at all" in err


def test_eval_without_best_or_last_lists_what_the_run_has(digits_run: Path) -> None:
    for name in ("best", "last"):
        shutil.rmtree(digits_run / "checkpoints" / name)
    code, _, err = _invoke("eval", digits_run.name)
    assert code != 0 and "'best' (the default) or 'last'" in err and "checkpoint 'last' (" not in err
    assert "it has: epoch-001, epoch-002, epoch-003" in err and f"e.g. {digits_run.name}:epoch-003" in err
    code, out, _ = _invoke("eval", f"{digits_run.name}:epoch-003", "--split", "val")
    assert code == 0 and "accuracy" in out


# ---------------------------------------------------------------- (b) greedy selection says why it stopped

def test_greedy_stop_reason_says_what_adding_the_candidate_would_do() -> None:
    from engine.ensemble import greedy_stop

    lower = greedy_stop("val", (0.93, -0.25), (0.92, -0.30), "run:epoch-002")
    assert lower["reason"] == "no_gain" and lower["candidate"] == "run:epoch-002"
    assert lower["message"] == ("stopped: the best remaining candidate, run:epoch-002, would lower val accuracy "
                                "from 93.00% to 92.00%")
    tie = greedy_stop("val", (1.0, -0.0192), (1.0, -0.0274), "run:epoch-001")
    assert tie["message"].endswith("would keep val accuracy at 100.00% but raise val loss from 0.0192 to 0.0274")
    assert (tie["candidate_accuracy"], tie["candidate_loss"]) == (1.0, 0.0274)
    every = greedy_stop("val", (0.95, -0.2), None, None, total=3)
    assert every["reason"] == "all_added" and every["message"].startswith("every candidate was added (3)")


def test_ensemble_greedy_prints_and_records_why_it_stopped(digits_run: Path) -> None:
    code, out, err = _invoke("ensemble", f"{digits_run.name}:all", "--greedy", "--json")
    assert code == 0, err
    greedy = json.loads(out)["greedy"]
    stop = greedy["stop"]
    assert stop["reason"] in ("no_gain", "all_added") and greedy["stopped"] == stop["message"]
    if stop["reason"] == "no_gain":  # the candidate left out is named with its scores
        assert stop["candidate"] not in [step["added"] for step in greedy["trace"]]
        assert (stop["candidate_accuracy"], -stop["candidate_loss"]) <= (stop["accuracy"], -stop["loss"])
    code, out, _ = _invoke("ensemble", f"{digits_run.name}:all", "--greedy")
    assert code == 0 and stop["message"] in " ".join(out.split())


# ---------------------------------------------------------------- (c) predict follows the training CSV's ids

def _png(path: Path, value: int) -> None:
    """An 8x8 gray PNG whose brightness says its class (so a 1-epoch model learns something)."""
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8), "L").save(path)


@pytest.fixture(scope="module")
def csv_data(home: Path) -> Path:
    """A CSV data set of generated PNGs: images/10000.png ... with labels.csv listing `10000.png` and
    labels-stem.csv listing `10000`, and an unlabeled test/ folder (20000.png ...) with its answer key."""
    root = home / "csvdata"
    (root / "images").mkdir(parents=True)
    (root / "test").mkdir()
    rows = []
    for index in range(60):
        label = ("dark", "mid", "light")[index % 3]
        _png(root / "images" / f"{10000 + index}.png", 40 + 80 * (index % 3) + index % 7)
        rows.append((f"{10000 + index}.png", label))
    (root / "labels.csv").write_text("Id,Category\n" + "".join(f"{i},{c}\n" for i, c in rows))
    (root / "labels-stem.csv").write_text("Id,Category\n" + "".join(f"{i[:-4]},{c}\n" for i, c in rows))
    key = []
    for index in range(6):
        _png(root / "test" / f"{20000 + index}.png", 40 + 80 * (index % 3))
        key.append(f"{20000 + index}.png,{('dark', 'mid', 'light')[index % 3]}\n")
    (root / "test-labels.csv").write_text("Id,Category\n" + "".join(key))
    return root


def _csv_run(home: Path, csv_data: Path, csv_file: str) -> Path:
    return _train(home, ["data.source=csv", f"data.root={csv_data / 'images'}", f"data.csv_file=../{csv_file}",
                         "data.image_size=8", "data.channels=1", "data.val_fraction=0.2", "data.test_fraction=0",
                         "train.epochs=1", f"name=csv-{csv_file[:-4]}"])


@pytest.fixture(scope="module")
def csv_runs(home: Path, csv_data: Path) -> dict[str, Path]:
    """Two runs on the same images: one trained from labels.csv (ids with extension), one from labels-stem.csv."""
    return {"name": _csv_run(home, csv_data, "labels.csv"), "stem": _csv_run(home, csv_data, "labels-stem.csv")}


def _ids(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return [row["Id"] for row in csv.DictReader(handle)]


def _predict(run: Path, images: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _invoke("predict", str(run), "--images", str(images), "--out", str(out), *extra)


def test_predict_keeps_extensions_when_the_training_csv_has_them(csv_runs: dict[str, Path], csv_data: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "submission.csv"
    code, _, err = _predict(csv_runs["name"], csv_data / "test", out)
    assert code == 0, err
    assert _ids(out) == [f"{20000 + i}.png" for i in range(6)]
    assert _ids(out) == _ids(csv_data / "test-labels.csv")  # the submission joins back to the answer key
    assert "ids with extension (e.g. 20000.png), as in the training CSV" in err and "labels.csv" in err
    code, _, err = _predict(csv_runs["name"], csv_data / "test", out, "--ids", "stem")
    assert code == 0 and _ids(out) == [str(20000 + i) for i in range(6)] and "as --ids stem asks" in err


def test_predict_drops_extensions_when_the_training_csv_does(csv_runs: dict[str, Path], csv_data: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "submission.csv"
    code, _, err = _predict(csv_runs["stem"], csv_data / "test", out)
    assert code == 0 and _ids(out) == [str(20000 + i) for i in range(6)], err
    assert "ids without extension (e.g. 20000), as in the training CSV" in err and "labels-stem.csv" in err
    code, out_json, _ = _predict(csv_runs["stem"], csv_data / "test", out, "--ids", "name", "--json")
    assert code == 0 and _ids(out) == [f"{20000 + i}.png" for i in range(6)]
    assert json.loads(out_json)["ids"] == "name"
    code, _, err = _predict(csv_runs["stem"], csv_data / "test", out, "--ids", "png")
    assert code == 2 and "--ids" in err


def test_predict_without_a_training_csv_writes_stems(digits_run: Path, csv_data: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from engine.config import DataConfig
    from engine.predict import id_style

    out = tmp_path / "submission.csv"
    code, _, err = _predict(digits_run, csv_data / "test", out)
    assert code == 0 and _ids(out)[0] == "20000" and "not trained on a CSV" in err, err
    gone = DataConfig(source="csv", root=str(tmp_path / "moved"), csv_file="labels.csv")
    assert id_style(gone) == ("stem", "since the training CSV could not be read")
    assert "data.csv_file labels.csv" in caplog.text and "--ids name" in caplog.text
