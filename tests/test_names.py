"""How runs are named and found: short names, derived runs, `--name`, and `--set` with several values."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from console.cli import app
from engine.errors import RunError

runner = CliRunner()


def make_run(root: Path, name: str, started: float, *, inside: Path | None = None) -> Path:
    """A run folder made by the engine's own functions (no training): `<name>-<stamp>[-n]` with its status."""
    from engine.runs import create_run, write_status

    folder = create_run(inside or root, name)
    write_status(folder, {"state": "finished", "started": started, "epoch": 1, "epochs": 1})
    return folder


@pytest.fixture
def runs(isolated_dirs: Path) -> dict[str, Path]:
    """Two quickstart runs (the second made in the same second gets a `-1`), a fine-tune of one, a k-fold group
    of it, an `lr02` run and one whose name starts like quickstart's."""
    from engine.kfold import RECORD, create_group

    root = isolated_dirs / "runs"
    made = {"old": make_run(root, "quickstart", 100.0), "new": make_run(root, "quickstart", 200.0),
            "ft": make_run(root, "quickstart-ft", 300.0), "lr02": make_run(root, "lr02", 50.0),
            "other": make_run(root, "quickstarter", 60.0)}
    group = create_group(root, "quickstart")
    (group / RECORD).write_text(json.dumps({"kind": "kfold", "experiment": "quickstart", "members": []}))
    made["group"] = group
    made["fold0"] = make_run(root, "quickstart-fold0", 400.0, inside=group)
    return made


def test_an_exact_name_picks_the_newest_run_of_that_name_and_says_which(runs: dict[str, Path],
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    from engine.runs import resolve_run

    root = runs["old"].parent
    with caplog.at_level(logging.INFO, logger="engine.runs"):
        assert resolve_run(root, "quickstart") == runs["new"]
    assert runs["new"].name in caplog.text and "2 runs" in caplog.text
    assert resolve_run(root, runs["old"].name) == runs["old"]  # a folder's own name is that folder
    assert resolve_run(root, "quickstart-ft") == runs["ft"]
    assert resolve_run(root, "quickstart-fold0") == runs["fold0"]
    assert resolve_run(root, "lr0") == runs["lr02"]  # a unique prefix still works
    assert resolve_run(root, "latest") == runs["fold0"]
    with pytest.raises(RunError, match=r"'quick' matches several runs: .*quickstart \(2 runs\)"):
        resolve_run(root, "quick")


def test_derived_runs_never_make_the_parent_name_ambiguous(runs: dict[str, Path]) -> None:
    from engine.compare import expand_targets, group_match

    root = runs["old"].parent
    assert group_match(root, "quickstart") is None  # the run name wins over the group's prefix
    assert group_match(root, "quickstart-kfold") == runs["group"]
    assert group_match(root, runs["group"].name) == runs["group"]
    assert expand_targets(root, ["quickstart"]) == [runs["new"]]
    assert expand_targets(root, ["quickstart-kfold"]) == [runs["fold0"]]


def test_cli_says_which_run_a_name_picked_and_help_states_the_rule(runs: dict[str, Path]) -> None:
    shown = runner.invoke(app, ["runs", "show", "quickstart", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["run_dir"] == str(runs["new"])
    assert f"quickstart: {runs['new'].name}" in shown.stderr
    helped = runner.invoke(app, ["finetune", "--help"], terminal_width=200)
    assert "newest run" in helped.stdout and "X-ft-" in helped.stdout


def test_train_name_keeps_the_experiment_name_in_the_config(isolated_dirs: Path) -> None:
    from engine.presets import resolve_experiment
    from engine.runs import read_config

    result = runner.invoke(app, ["train", "quickstart", "--name", "lr02", "--json", "-q", "--set", "train.epochs=1",
                                 "--set", "data.limit=200"])
    assert result.exit_code == 0, result.output
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    assert run_dir.name.startswith("lr02-")
    config = read_config(run_dir)
    assert (config.name, config.experiment) == ("lr02", "quickstart")
    again = resolve_experiment(str(run_dir / "config.yaml"))  # the record re-runs as it was
    assert (again.name, again.experiment) == ("lr02", "quickstart")


def test_no_run_may_be_named_latest_the_word_for_the_newest_run(isolated_dirs: Path) -> None:
    result = runner.invoke(app, ["train", "quickstart", "--name", "latest"])
    assert result.exit_code == 2 and "--name 'latest'" in result.output and "newest run" in result.output
    preset = isolated_dirs / "latest.yaml"
    preset.write_text("base: quickstart\nname: latest\n")
    result = runner.invoke(app, ["presets", "validate", str(preset)])
    assert result.exit_code != 0 and f"{preset}: name: 'latest' stands for the newest run" in result.output
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())


def test_one_set_takes_several_key_values(isolated_dirs: Path) -> None:
    import yaml

    result = runner.invoke(app, ["presets", "export", "quickstart", "--out", "-",
                                 "--set", "optim.lr=0.2", "train.epochs=3", "description=a b = c",
                                 "--set", "train.batch_size=16", "-s", "data.limit=100", "model.dropout=0.25"])
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load(result.stdout)
    assert exported["optim"]["lr"] == 0.2 and exported["train"]["epochs"] == 3
    assert exported["description"] == "a b = c" and exported["train"]["batch_size"] == 16
    assert exported["data"]["limit"] == 100 and exported["model"]["dropout"] == 0.25
    bad = runner.invoke(app, ["presets", "export", "quickstart", "--out", "-", "--set", "optim.lr=0.2", "optim.lrr=1"])
    assert bad.exit_code == 2 and "optim.lrr" in bad.stderr  # every value is still validated, naming its key
