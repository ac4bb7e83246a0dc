"""Getting data sets in place and what a run says about its data (issue 14, items 5 and 8): the offline error
names the folder, the files and both ways to point elsewhere; warnings for splits smaller than the config assumes;
one cache entry for the digits at their native size; a diverged run reported once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from console.cli import app
from engine.config import DataConfig, from_dict
from engine.data import load_dataset
from engine.data.table import cache_entries
from engine.errors import DataError
from tests.test_data_formats import write_mnist

runner = CliRunner()


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_missing_mnist_offline_is_two_lines_naming_folder_files_and_both_ways_elsewhere(isolated_dirs: Path) -> None:
    result = runner.invoke(app, ["data", "stats", "mnist"])
    assert result.exit_code == 2
    first, second = _error_lines(result)  # exactly two lines
    folder = isolated_dirs / "data" / "MNIST" / "raw"
    assert first.startswith("error: mnist: dataset files not found") and f"{folder}/" in first
    assert "train-images-idx3-ubyte" in first and "t10k-labels-idx1-ubyte" in first and ".gz" in first
    assert "IMGCLS_OFFLINE" in first
    assert f"IMGCLS_DATA_DIR=DIR (the data folder, now {isolated_dirs / 'data'})" in second
    assert "--set data.root=DIR" in second and "DIR/MNIST/raw/" in second


def test_missing_cifar10_under_data_root_names_that_root_in_train(isolated_dirs: Path) -> None:
    elsewhere = isolated_dirs / "elsewhere"
    result = runner.invoke(app, ["train", "quickstart", "--set", "data.source=cifar10", "--set",
                                 f"data.root={elsewhere}"])
    assert result.exit_code == 2
    first, second = _error_lines(result)
    assert f"{elsewhere}/cifar-10-batches-py/ with data_batch_1" in first and "batches.meta" in first
    assert f"--set data.root=DIR (now {elsewhere})" in second and "IMGCLS_DATA_DIR=DIR" in second
    assert "DIR/cifar-10-batches-py/" in second
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())


def test_the_readme_example_copying_mnist_files_into_place_works(isolated_dirs: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    downloads = isolated_dirs / "datasets"
    write_mnist(downloads)  # DIR/MNIST/raw/train-images-idx3-ubyte.gz, ... as the README's example copies them
    by_root = runner.invoke(app, ["data", "stats", "mnist", "--set", f"data.root={downloads}", "--json"])
    assert by_root.exit_code == 0, by_root.output
    assert json.loads(by_root.stdout)["info"]["num_images"] == 40
    monkeypatch.setenv("IMGCLS_DATA_DIR", str(downloads))
    by_env = runner.invoke(app, ["data", "stats", "mnist", "--json"])
    assert by_env.exit_code == 0, by_env.output


def test_the_digits_at_native_and_explicit_size_share_one_cache_entry() -> None:
    native = load_dataset(DataConfig(source="digits"))
    explicit = load_dataset(DataConfig(source="digits", image_size=8, channels=1))
    assert explicit.info["cache_hit"] and explicit.info["cache_key"] == native.info["cache_key"]
    assert len(cache_entries()) == 1
    listed = json.loads(runner.invoke(app, ["data", "cache", "--json"]).stdout)
    assert len(listed["entries"]) == 1
    resized = load_dataset(DataConfig(source="digits", image_size=16))
    assert resized.info["cache_key"] != native.info["cache_key"] and resized.image_size == 16


def test_no_validation_images_and_a_batch_larger_than_the_training_set_are_warned(isolated_dirs: Path) -> None:
    result = runner.invoke(app, ["train", "quickstart", "--set", "train.epochs=1", "--set", "data.limit=10"])
    assert result.exit_code == 0, result.output
    assert "warning: data.limit=10 leaves no validation images" in result.stderr
    assert "no `best` checkpoint is saved" in result.stderr
    assert "warning: train.batch_size=32 exceeds the 10 training images (data.limit=10)" in result.stderr
    (run_dir,) = (isolated_dirs / "runs").iterdir()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert any("no validation images" in m for m in warnings) and any("batch_size" in m for m in warnings)


def test_a_plateau_schedule_or_early_stop_without_validation_images_is_refused() -> None:
    from engine.setup import check_split_sizes

    plateau = from_dict({"data": {"limit": 10}, "schedule": {"name": "plateau", "metric": "val_loss"}})
    with pytest.raises(DataError, match=r"data.limit=10 leaves no validation images.*schedule.metric: val_loss"):
        check_split_sizes(plateau, train_images=10, val_images=0)
    stopping = from_dict({"data": {"val_fraction": 0.0}, "train": {"early_stop": {"metric": "val_acc"}}})
    with pytest.raises(DataError, match=r"data.val_fraction is 0.*train.early_stop.metric: val_acc"):
        check_split_sizes(stopping, train_images=100, val_images=0)
    assert check_split_sizes(from_dict({"data": {"val_fraction": 0.0}}), train_images=100, val_images=0) == []


def test_a_diverged_run_is_reported_once(isolated_dirs: Path) -> None:
    result = runner.invoke(app, ["train", "quickstart", "--set", "train.epochs=1", "--set", "data.limit=100",
                                 "--set", "optim.lr=1e30"])
    assert result.exit_code == 3, result.output
    assert result.stderr.count("loss became NaN/Inf") == 1, result.stderr
    assert "diverged: loss became NaN/Inf" in result.stderr


def test_a_diverged_fold_is_reported_with_its_reason(isolated_dirs: Path) -> None:
    result = runner.invoke(app, ["kfold", "quickstart", "--folds", "2", "--set", "train.epochs=1", "--set",
                                 "data.limit=400", "--set", "optim.lr=1e30"])
    assert result.exit_code == 1, result.output
    assert "k-fold stopped after fold 0: " in result.stderr and "loss became NaN/Inf" in result.stderr, result.stderr


def test_a_failed_download_is_told_by_its_reason_not_every_mirror() -> None:
    """torchvision's error lists every mirror with urllib's wrapping over several lines; the message keeps the
    reason (the folder and files expected are told beside it)."""
    from engine.data.torchvision_sources import download_failure

    offline = RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://a.example/mnist/, got:\n"
                           "<urlopen error [Errno -2] Name or service not known>\nTried http://b.example/mnist/, "
                           "got:\n<urlopen error [Errno -2] Name or service not known>\n")
    assert download_failure(offline) == "[Errno -2] Name or service not known"
    assert download_failure(RuntimeError("Error downloading x: Tried http://a/, got: HTTP Error 503: Busy")) == \
        "HTTP Error 503: Busy"
    assert download_failure(OSError("No space left\non device")) == "OSError: No space left on device"


def test_a_relative_data_root_that_is_not_there_says_where_it_was_looked_for(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A preset shared with `root: d200/train` works only from the folder it was written in: the error says the
    path was taken from the working folder."""
    monkeypatch.chdir(tmp_path)
    config = from_dict({"data": {"source": "folder", "root": "d200/train"}}, "shared.yaml")
    with pytest.raises(DataError, match=rf"data\.root: folder d200/train does not exist \(relative paths are taken "
                                        rf"from the working folder, {re.escape(str(tmp_path))}\)"):
        load_dataset(config.data)


def test_a_root_of_split_folders_is_not_read_as_two_classes(isolated_dirs: Path) -> None:
    from PIL import Image

    root = isolated_dirs / "pets"
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for index in range(3):
                Image.new("L", (8, 8), index * 40).save(root / split / name / f"{index}.png")
    result = runner.invoke(app, ["train", "quickstart", "--set", "data.source=folder", f"data.root={root}"])
    assert result.exit_code == 2 and len(_error_lines(result)) == 1
    assert (f"data.root: {root} holds split folders (test, train) that hold class folders, not classes; set "
            f"data.root={root / 'train'} data.test_root={root / 'test'}") in result.stderr
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())  # nothing made
    split = load_dataset(DataConfig(source="folder", root=str(root / "train"), test_root=str(root / "test"),
                                    val_fraction=0.0))
    assert split.classes == ["cat", "dog"] and len(split.test_idx) == 6  # the advice works
    (root / "test").rename(root / "one-class")  # a class folder of another name: classes, as before
    assert load_dataset(DataConfig(source="folder", root=str(root), val_fraction=0.0, test_fraction=0.5)).classes \
        == ["one-class", "train"]


def test_a_stop_asked_for_while_the_data_is_decoded_ends_it_there(isolated_dirs: Path) -> None:
    """Ctrl-C (or the app's stop) during a first decode, which can take minutes, is acted on at once: a new run
    of the `train` command leaves no folder; a launched run (its folder the viewer's) is `interrupted`."""
    from PIL import Image

    from engine.errors import Cancelled
    from engine.launch import prepare_run
    from engine.presets import resolve_experiment
    from engine.runner import start_run, train_prepared
    from engine.runs import read_status
    from engine.stop import StopRequest

    root = isolated_dirs / "shapes"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for index in range(120):
            Image.new("L", (8, 8), index).save(root / name / f"{index}.png")
    config = resolve_experiment("quickstart", ["data.source=folder", f"data.root={root}", "train.epochs=1"])
    stopped = StopRequest(signal_number=2, count=1)  # as the first Ctrl-C leaves it
    runs = isolated_dirs / "runs"
    with pytest.raises(Cancelled, match=r"stopped by signal 2 while loading the data \(\d+ of 240 images decoded\)"):
        start_run(config, runs, stop=stopped)
    assert list(runs.iterdir()) == []  # nothing trained: no folder kept
    run_dir = prepare_run(config, runs)
    with pytest.raises(Cancelled):
        train_prepared(run_dir, stop=StopRequest(signal_number=15, count=1))
    status = read_status(run_dir)
    assert status["state"] == "interrupted" and "while loading the data" in status["reason"]
    assert start_run(config, runs)["state"] == "finished"  # nothing half-decoded was cached
