"""Validation lists every error of a file, each naming the file and the dotted key (issue 14, item 8), in the
engine and in the CLI (`presets validate`, `train` with a bad file)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from console.cli import app
from engine import config as cfg
from engine.errors import ConfigError
from tests.conftest import write

runner = CliRunner()

THREE_ERRORS = """\
description: three mistakes in three places
data: digits
optim: {lrr: 0.1}
train: {epochs: ten, batch_size: 0}
"""


def _listed(result, path: Path) -> list[str]:
    """The error lines of a CLI result: `error: FILE: N errors:` and then one line per error."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    assert lines[0] == f"error: {path}: {len(lines) - 1} errors:", result.stderr
    return lines[1:]


def _assert_the_three_errors(lines: list[str], path: Path) -> None:
    assert len(lines) == 3 and all(line.startswith(f"{path}: ") for line in lines)
    assert "optim.lrr: unknown key (did you mean `lr`?)" in lines[0]
    assert "train.epochs: 'ten' (str) is not a valid value; expected int" in lines[1]
    assert "train.batch_size: must be at least 1" in lines[2]


def test_presets_validate_lists_every_error_of_the_file(isolated_dirs: Path) -> None:
    path = write(isolated_dirs / "bad.yaml", THREE_ERRORS)
    result = runner.invoke(app, ["presets", "validate", str(path)])
    assert result.exit_code == 2
    _assert_the_three_errors(_listed(result, path), path)


def test_train_with_a_bad_file_lists_every_error_and_creates_nothing(isolated_dirs: Path) -> None:
    path = write(isolated_dirs / "bad.yaml", THREE_ERRORS)
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 2
    _assert_the_three_errors(_listed(result, path), path)
    assert not (isolated_dirs / "runs").exists()


def test_composition_and_deep_errors_are_listed_with_the_others(isolated_dirs: Path) -> None:
    path = write(isolated_dirs / "worse.yaml", """\
colour: red
model: {preset: no-such-model}
augment: {ops: [{op: hflipp}]}
data: {source: digitz}
optim: {lr: -1}
""")
    result = runner.invoke(app, ["presets", "validate", str(path)])
    assert result.exit_code == 2
    lines = _listed(result, path)
    keys = [line.removeprefix(f"{path}: ").split(": ")[0] for line in lines]
    assert keys == ["colour", "model.preset", "data.source", "optim.lr", "augment.ops[0].op"], lines


def test_from_dict_and_check_semantics_collect_every_problem() -> None:
    with pytest.raises(cfg.ConfigErrors) as caught:
        cfg.from_dict({"optim": {"lrr": 0.1, "lr": -1}, "data": {"val_fraction": 2.0}, "schedule": {"nam": 1}},
                      "exp.yaml")
    assert [p.split(": ")[1] for p in caught.value.problems] == [
        "optim.lrr", "schedule.nam", "optim.lr", "data.val_fraction"]
    config = cfg.ExperimentConfig()
    config.train.epochs, config.model.dropout = 0, 1.5
    with pytest.raises(ConfigError, match=r"train.epochs: must be at least 1\n  model.dropout: must be in"):
        cfg.check_semantics(config)


def test_a_single_error_stays_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        cfg.from_dict({"optim": {"lrr": 0.1}}, "exp.yaml")
    assert str(caught.value) == "exp.yaml: optim.lrr: unknown key (did you mean `lr`?)"
    assert not isinstance(caught.value, cfg.ConfigErrors)


def test_a_deep_problem_of_a_set_value_names_that_set_and_every_bad_model_option(isolated_dirs: Path) -> None:
    result = runner.invoke(app, ["train", "quickstart", "--set", "model.options.bogus=1", "model.options.other=2",
                                 "optim.lr=0.1"])
    assert result.exit_code == 2
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    assert lines[0] == "error: --set: 2 errors:"  # not quickstart.yaml, which has neither key
    assert lines[1].startswith("--set model.options.bogus=1: model.options.bogus: unknown option for model")
    assert lines[2].startswith("--set model.options.other=2: model.options.other: unknown option for model")
    tta = runner.invoke(app, ["train", "quickstart", "--set", "eval.tta=random:abc"])
    assert tta.stderr == ("error: --set eval.tta=random:abc: eval.tta: 'random:abc' needs a whole number of passes "
                          "from 1 to 1000, e.g. random:8\n")  # `:abc:` not drawn as an emoji, no `in 'random:abc'`
    preset = write(isolated_dirs / "mine.yaml", "base: quickstart\nmodel: {options: {bogus: 1}}\n")
    from_file = runner.invoke(app, ["train", str(preset), "--set", "optim.lr=0.1"])
    assert from_file.stderr.startswith(f"error: {preset}: model.options.bogus: unknown option")  # the file's own
