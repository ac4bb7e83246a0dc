"""`runs compare` and the report's comparison table: what differs, compact values, fitting the terminal; the
report's accuracy bars."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from console.cli import app
from engine.compare import MISSING, NO_VALUE, compact_value, config_columns, differing_keys, run_config
from engine.plots import bar_figure
from engine.config import renamed as config_renamed
from engine.presets import resolve_experiment
from engine.report import comparison_section, write_report
from engine.runs import create_run, write_config, write_status

runner = CliRunner()
# (experiment, overrides, best val acc): a ladder of different architectures, augmentations and schedules, plus
# an LR variant of the first, as a user's runs folder holds them.
RUNS = [("quickstart", [], 0.9731), ("mnist-mlp2-sigmoid", [], 0.9512), ("mnist-mlp3-bn-aug", [], 0.9832),
        ("tiny200-resnet18-apply", [], 0.4906), ("quickstart", ["optim.lr=0.1"], 0.99)]


def make_run(root: Path, experiment: str, overrides: list[str], acc: float, index: int) -> Path:
    """A run folder as training leaves it (resolved config.yaml, finished status.json), without the training."""
    config = resolve_experiment(experiment, overrides)
    run_dir = create_run(root, f"{config.name}-{index}")
    write_config(run_dir, config)
    write_status(run_dir, {"state": "finished", "data": config.data.source, "model": config.model.name,
                           "experiment": config.name, "best_val_acc": acc, "test_acc": acc - 0.01, "epoch": 3,
                           "epochs": 3, "params": 21000 * (index + 1), "wall_s": 12.5 * index,
                           "started": time.time() + index})
    return run_dir


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The RUNS, in a runs folder of their own (read only by the tests)."""
    root = tmp_path_factory.mktemp("ladder") / "runs"
    return [make_run(root, name, overrides, acc, i) for i, (name, overrides, acc) in enumerate(RUNS)]


def compare_output(args: list[str], runs: list[Path], **invoke: object) -> list[str]:
    """`runs compare ARGS` over the runs' folder: stdout's lines."""
    command = ["runs", "compare", *args, "--runs-dir", str(runs[0].parent)]
    result = runner.invoke(app, command, **invoke)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_compact_values_read_like_the_write_ups() -> None:
    ops = [{"op": "hflip", "p": 0.5}, {"op": "translate", "fraction": 0.125, "p": 1.0}]
    assert compact_value(ops, "augment.ops") == "hflip 0.5, translate 1/8"
    nested = [{"op": "choice", "p": 1.0, "ops": [{"op": "rotate", "degrees": 10},
                                                 {"op": "crop", "padding": 1, "padding_mode": "reflect"}]},
              {"op": "affine", "degrees": 10, "translate": 0.125, "p": 0.8}]
    assert compact_value(nested, "augment.ops") == ("choice(rotate 10, crop padding=1 padding_mode=reflect), "
                                                    "affine degrees=10 translate=1/8 p=0.8")
    assert compact_value([64, 16]) == "[64,16]" and compact_value([]) == "none"
    assert compact_value(MISSING) == compact_value(None) == NO_VALUE
    assert (compact_value(True), compact_value(0.0005), compact_value(1e-8)) == ("true", "0.0005", "1e-08")


def test_columns_are_per_key_or_per_section(ladder: list[Path]) -> None:
    configs = [run_config(d) for d in ladder]
    keys = differing_keys(configs)
    assert "model.options.hidden" in keys and "augment.ops" in keys
    per_key = dict(config_columns(configs, keys, "key"))
    assert per_key["model.hidden"][1].startswith("[") and per_key["model.hidden"][0] == NO_VALUE  # not a convnet's
    per_section = dict(config_columns(configs, keys, "section"))
    assert list(per_section) == ["data", "model", "augment.ops", "optim", "schedule", "train", "eval"]
    assert per_section["model"][0].startswith("name=convnet; ") and "hidden" not in per_section["model"][0]
    (header, cells), = config_columns(configs, keys, "one")
    assert header == "settings" and "optim.lr=0.1" in cells[4]


def test_compare_fits_80_columns(ladder: list[Path]) -> None:
    lines = compare_output([], ladder, env={"COLUMNS": "80"})
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    text = "\n".join(lines)
    assert "…" not in text and '{"op"' not in text
    assert "run (no time stamp)" in text  # too narrow for 40-character names: their unique part, whole
    for run_dir in ladder:
        assert re.sub(r"-\d{8}-\d{6}$", " ", run_dir.name) in text
    assert "97.31%" in text and "hflip 0.5" in text.replace("\n", " ")


def test_compare_uses_wide_terminals_and_names_the_keys(ladder: list[Path]) -> None:
    lines = compare_output([], ladder, env={"COLUMNS": "200"})
    text = "\n".join(lines)
    assert all(run_dir.name in text for run_dir in ladder) and max(len(line) for line in lines) <= 200
    assert "…" not in text and '{"op"' not in text
    assert "┃ model " in text and "┃ optim " in text and "lr=0.1" in text  # 33 keys: a column per section
    assert "eval.combine" not in text and "combine=vote" in text.replace("\n", " ")
    ladder_step = "\n".join(compare_output([ladder[1].name, ladder[2].name], ladder, env={"COLUMNS": "200"}))
    assert "model.hidden" in ladder_step and "[64,16]" in ladder_step and "exponential" in ladder_step
    assert "optim" not in ladder_step  # the same in both runs
    lr_only = "\n".join(compare_output([ladder[0].name, ladder[4].name], ladder, env={"COLUMNS": "200"}))
    assert "optim.lr" in lr_only and "0.05" in lr_only and "model" not in lr_only and "augment" not in lr_only


def test_compare_all_keeps_the_full_table(ladder: list[Path]) -> None:
    text = "\n".join(compare_output(["--all"], ladder, env={"COLUMNS": "80"}))
    assert "eval.combine" in text and "model.options.hidden" in text and "…" not in text


def test_report_table_is_compact_and_counts_right(ladder: list[Path], tmp_path: Path) -> None:
    section = "\n".join(comparison_section(ladder, tmp_path / "figures"))
    table = section.split("\n\n", 1)[1].split("\n\n", 1)[0]
    assert '{"op"' not in table and '"' not in table and "hflip 0.5" in table
    assert NO_VALUE in table and "(not set)" not in table and "<missing>" not in table
    assert len(table.splitlines()[0].split("|")) < 20  # metrics + one column per section, not one per key
    assert "33 config keys differ" in section
    one = write_report(ladder[:1], tmp_path / "one", confusion=False).read_text()
    assert re.search(r"^1 run;", one, re.M) and "run(s)" not in one


def test_accuracy_bars_zoom_in_and_write_their_values() -> None:
    figure = bar_figure(["a", "b"], {"best val acc": [0.97, 0.99], "test acc": [0.965, None]}, "accuracy")
    axis = figure.axes[0]
    low, high = axis.get_ylim()
    assert 80 <= low < 96.5 and 99 < high < 110 and max(axis.get_yticks()) <= 100  # percent, zoomed in
    labels = {t.get_text() for t in axis.texts}
    assert {"97.00%", "99.00%", "96.50%"} <= labels, labels


def test_a_renamed_run_and_an_extended_one_compare_in_few_words(isolated_dirs: Path) -> None:
    root = isolated_dirs / "runs"
    plain = make_run(root, "quickstart", [], 0.97, 0)
    renamed = create_run(root, "lr02-1")  # `train quickstart --set optim.lr=0.2 --name lr02`
    write_config(renamed, config_renamed(resolve_experiment("quickstart", ["optim.lr=0.2"]), "lr02"))
    assert differing_keys([run_config(plain), run_config(renamed)]) == ["optim.lr"]  # not name nor experiment
    segments = [{"epochs": 1, "name": "constant", "step_size": 30, "milestones": None, "gamma": 0.1}]
    assert compact_value(segments, "schedule.extend") == "constant 1 epoch"
