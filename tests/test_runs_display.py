"""What `runs show`, `runs list`, `runs diff`, `presets list` and the report print: the run's environment, the
metrics before the config, one way to show a missing value, model presets by name, plurals, and the k-fold
ensemble's confusion matrix."""

from __future__ import annotations

import json
import platform
import re
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from console.cli import app
from console.fmt import NO_VALUE, fmt_count, fmt_num, fmt_pct, fmt_seconds, plural
from engine.kfold import run_kfold
from engine.presets import resolve_experiment
from engine.report import write_report
from engine.runs import create_run, read_status, write_config, write_status

runner = CliRunner()


@pytest.fixture(scope="module")
def kfold_group(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-fold quickstart group (1 epoch per fold, 300 images): real fold runs and their ensemble."""
    home = tmp_path_factory.mktemp("display")
    with pytest.MonkeyPatch.context() as patch:
        for name, folder in (("RUNS", "runs"), ("PRESETS", "user-presets"), ("DATA", "data")):
            patch.setenv(f"IMGCLS_{name}_DIR", str(home / folder))
        patch.setenv("IMGCLS_OFFLINE", "1")
        config = resolve_experiment("quickstart", ["data.limit=300", "train.epochs=1"])
        record = run_kfold(config, 2, home / "runs")
    assert record["state"] == "finished", record
    return Path(record["group_dir"])


@pytest.fixture
def fold_run(kfold_group: Path, isolated_dirs: Path) -> Path:
    """This test's copy of the group's first fold run, as a plain run in its runs folder."""
    source = sorted(p for p in kfold_group.iterdir() if (p / "status.json").is_file())[0]
    target = isolated_dirs / "runs" / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".lock"))
    return target


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_runs_show_puts_metrics_first_config_on_request_and_says_what_made_it(fold_run: Path,
                                                                              kfold_group: Path) -> None:
    text = invoke("runs", "show", str(fold_run))
    lines = text.splitlines()
    status = json.loads((fold_run / "status.json").read_text())
    assert lines[1].startswith("experiment quickstart · data digits · model small-cnn (convnet)")  # not the fold's name
    assert fmt_pct(status["best_val_acc"]) in lines[2] and fmt_pct(status["test_acc"]) in lines[2]
    made = next(i for i, line in enumerate(lines) if line.startswith("made with"))
    assert made < next(i for i, line in enumerate(lines) if "epochs" in line)
    assert any(platform.python_version() in line for line in lines[made:made + 6])
    assert "label_smoothing" not in text and "--config" in text  # 80 lines of YAML only when asked for
    with_config = invoke("runs", "show", str(fold_run), "--config")
    assert with_config.index("checkpoints:") < with_config.index("label_smoothing")
    shown = json.loads(invoke("runs", "show", str(fold_run), "--json"))
    assert shown["environment"]["python"] == platform.python_version() and shown["environment"]["torch"]
    group = invoke("runs", "show", str(kfold_group))
    assert "made with:" in group and platform.python_version() in group  # the folds', told once


def test_a_run_without_an_environment_record_shows_one_line(fold_run: Path) -> None:
    (fold_run / "environment.json").unlink()
    text = invoke("runs", "show", str(fold_run))
    assert [line for line in text.splitlines() if line.startswith("made with")] == ["made with: not recorded"]
    assert json.loads(invoke("runs", "show", str(fold_run), "--json"))["environment"] is None
    report = write_report([fold_run], fold_run.parent.parent / "report", confusion=False).read_text()
    assert "Not recorded for all runs" in report


def test_the_report_says_what_made_its_runs(fold_run: Path, tmp_path: Path) -> None:
    report = write_report([fold_run], tmp_path / "report", confusion=False).read_text()
    section = report.split("## Made with", 1)[1]
    assert platform.python_version() in section and "All runs:" in section


def test_a_learning_rate_column_reads_in_one_form() -> None:
    from console.fmt import fmt_lr
    column = [fmt_lr(v) for v in (0.1, 0.000107, 9.56e-05, 3e-7)]
    assert column == ["1.00e-01", "1.07e-04", "9.56e-05", "3.00e-07"]  # `.3g` gave 0.000107 above 9.56e-05
    assert fmt_lr(None) == NO_VALUE


def test_missing_values_read_the_same_everywhere(isolated_dirs: Path) -> None:
    assert {fmt_pct(None), fmt_count(None), fmt_seconds(None), fmt_num(None)} == {NO_VALUE}
    root = isolated_dirs / "runs"
    for name, experiment in (("plain", "quickstart"), ("mlp", "mnist-mlp3-bn")):
        run_dir = create_run(root, name)
        write_config(run_dir, resolve_experiment(experiment))
        write_status(run_dir, {"state": "failed", "data": "digits", "model": "convnet", "started": time.time()})
    listed = invoke("runs", "list")
    diffed = invoke("runs", "diff", "plain", "mlp")
    for text in (listed, diffed, invoke("runs", "compare")):
        assert NO_VALUE in text and "<missing>" not in text and "(not set)" not in text
        assert not re.search(r"│ +-(/-)? +│", text), text  # no cell of a bare `-` (nor `-/-` epochs)


def test_runs_list_names_the_model_preset(isolated_dirs: Path, fold_run: Path) -> None:
    root = isolated_dirs / "runs"
    runs = (("mnist-mlp2-sigmoid", []), ("quickstart", ["model.dropout=0.3"]),
            ("quickstart", ["model.pretrained=/x/weights.safetensors"]))  # a fine-tune: the same model preset
    for index, (experiment, extra) in enumerate(runs):
        run_dir = create_run(root, f"{experiment}-{index}")
        config = resolve_experiment(experiment, extra)
        write_config(run_dir, config)
        write_status(run_dir, {"state": "finished", "data": config.data.source, "model": config.model.name,
                               "started": time.time() + index})
    rows = {line.split("│")[1].strip(): line for line in invoke("runs", "list").splitlines() if "│" in line}
    model_of = {name[:12]: row.split("│")[4].strip() for name, row in rows.items() if name}
    assert model_of == {fold_run.name[:12]: "small-cnn", "mnist-mlp2-s": "mnist-mlp2-sigmoid",
                        "quickstart-1": "small-cnn*", "quickstart-2": "small-cnn"}
    listed = json.loads(invoke("runs", "list", "--json"))
    assert [r["model_preset"] for r in listed] == ["small-cnn", "mnist-mlp2-sigmoid", "small-cnn*", "small-cnn"]


def test_a_run_records_its_model_preset_and_every_listing_names_it(isolated_dirs: Path, fold_run: Path) -> None:
    from console.screens.run_rows import load_rows
    from engine.compare import filter_runs
    from engine.runs import list_runs

    assert read_status(fold_run)["model_preset"] == "small-cnn"  # recorded by the training process
    root = isolated_dirs / "runs"
    recorded = create_run(root, "recorded")  # a listing reads the recorded label: no preset is loaded for it
    write_config(recorded, resolve_experiment("quickstart", []))
    write_status(recorded, {"state": "finished", "experiment": "quickstart", "data": "digits", "model": "convnet", "model_preset": "my-cnn*"})
    listed = {r["name"]: r["model_preset"] for r in json.loads(invoke("runs", "list", "--json"))}
    assert listed == {fold_run.name: "small-cnn", recorded.name: "my-cnn*"}
    assert {row.name: row.model for row in load_rows(root)} == {fold_run.name: "small-cnn", recorded.name: "my-cnn*"}
    runs = list_runs(root)  # `compare --model` by the preset or by the architecture
    assert [r.name for r in filter_runs(runs, model="my-cnn")] == [recorded.name]
    assert len(filter_runs(runs, model="convnet")) == 2
    assert "experiment quickstart · data digits · model my-cnn* (convnet) · epoch - of -" in invoke(
        "runs", "show", recorded.name).replace(NO_VALUE, "-")


def test_presets_list_puts_user_presets_first(isolated_dirs: Path) -> None:
    mine = isolated_dirs / "zz-mine.yaml"
    mine.write_text("name: sgd\nlr: 0.02\n")
    assert runner.invoke(app, ["presets", "import", str(mine), "--kind", "optim"]).exit_code == 0
    for args in (["presets", "list", "optim"], ["presets", "list"]):
        rows = [line for line in invoke(*args).splitlines() if "│" in line]
        assert "zz-mine" in rows[0] and "user" in rows[0], rows[:3]


def test_plurals() -> None:
    assert [plural(n, "entry") for n in (0, 1, 2)] == ["0 entries", "1 entry", "2 entries"]
    assert (plural(1, "day"), plural(1.5, "day"), plural(3, "run")) == ("1 day", "1.5 days", "3 runs")
    assert (plural(3, "epoch"), plural(2, "batch"), plural(2, "class")) == ("3 epochs", "2 batches", "2 classes")
    assert (plural(2, "class"), plural(1, "class"), plural(0, "copy")) == ("2 classes", "1 class", "0 copies")


def test_kfold_report_shows_the_fold_ensembles_confusion_matrix(kfold_group: Path, tmp_path: Path) -> None:
    folds = sorted(p for p in kfold_group.iterdir() if (p / "status.json").is_file())
    markdown = write_report(folds, tmp_path / "report", confusion=True).read_text()
    before, ensemble = markdown.split(f"### {kfold_group.name}: fold ensemble", 1)
    assert "## Confusion matrices" in before
    record = json.loads((kfold_group / "kfold.json").read_text())["ensemble"]
    assert fmt_pct(record["accuracy"]) in ensemble.split("###")[0]
    image = ensemble.split("](", 1)[1].split(")", 1)[0]
    assert (tmp_path / "report" / image).is_file() and image.endswith("ensemble-confusion.png")


def test_runs_list_fits_80_columns_without_cutting_a_name(isolated_dirs: Path, kfold_group: Path) -> None:
    root = isolated_dirs / "runs"
    copied = Path(shutil.copytree(kfold_group, root / kfold_group.name, ignore=shutil.ignore_patterns(".lock")))
    fold_run = sorted(p for p in copied.iterdir() if (p / "status.json").is_file())[0]
    run_dir = create_run(root, "quickstart-lr-batch-t0")  # a sweep trial's long name
    write_config(run_dir, resolve_experiment("quickstart"))
    write_status(run_dir, {"state": "finished", "data": "digits", "model": "convnet", "best_val_acc": 0.9,
                           "started": time.time()})
    result = runner.invoke(app, ["runs", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    table = "\n".join(lines)
    group, fold = fold_run.parent.name, fold_run.name
    assert run_dir.name in table and f"{group}/" in table and fold in table  # a fold's name on two lines, whole
    assert "90.00%" in table and "finished" in table  # the accuracies and the state stay
    assert lines[-1].startswith("left out at 80 columns: tags, params")
    wide = runner.invoke(app, ["runs", "list"], env={"COLUMNS": "200"}).stdout
    assert "left out" not in wide, wide
    assert f"{group}/" in wide and fold in wide


def test_runs_list_folds_a_very_long_name_and_keeps_state_and_accuracies(isolated_dirs: Path) -> None:
    long_name = "a-very-long-experiment-name-someone-typed-for-a-sweep-of-learning-rates-and-batch-sizes"
    run_dir = create_run(isolated_dirs / "runs", long_name)
    write_config(run_dir, resolve_experiment("quickstart"))
    write_status(run_dir, {"state": "finished", "data": "digits", "model": "convnet", "best_val_acc": 0.9,
                           "test_acc": 0.8, "started": time.time()})
    result = runner.invoke(app, ["runs", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if line.startswith("│")]
    assert "finished" in rows[0] and "90.00%" in rows[0] and "80.00%" in rows[0]  # not squeezed to nothing
    folded = "".join(line.split("│")[1].strip() for line in rows)
    assert run_dir.name in folded and "…" not in folded  # whole, across lines


def test_runs_show_of_a_run_with_nothing_trained_says_so(isolated_dirs: Path) -> None:
    run_dir = create_run(isolated_dirs / "runs", "empty")
    write_config(run_dir, resolve_experiment("quickstart"))
    write_status(run_dir, {"state": "failed", "started": time.time()})
    shown = invoke("runs", "show", run_dir.name)
    assert "no best checkpoint yet; best val acc —; test acc —\n" in shown  # not `best — — at epoch —`
    assert "epochs: none finished yet" in shown and "params" not in shown


def test_a_damaged_status_is_said_and_the_rest_of_the_run_still_shown(fold_run: Path) -> None:
    """status.json is a summary the training process rewrites: torn, the run reads as unknown with the reason,
    and show, list and compare go on (each stopped at the JSON error)."""
    (fold_run / "status.json").write_text('{"state": "fini')
    shown = runner.invoke(app, ["runs", "show", fold_run.name])
    assert shown.exit_code == 0, shown.output
    assert f"warning: {fold_run / 'status.json'}: not valid JSON" in " ".join(shown.output.split())
    assert "checkpoints: best" in shown.output and "epoch" in shown.output  # its records, intact
    listed = runner.invoke(app, ["runs", "list"])
    assert listed.exit_code == 0 and f"warning: {fold_run.name}: " in listed.output
    assert runner.invoke(app, ["runs", "compare", fold_run.name]).exit_code == 0
    (fold_run / "checkpoints" / "best" / "meta.json").write_text("{")  # a checkpoint's record torn: said, not hidden
    shown = runner.invoke(app, ["runs", "show", fold_run.name])
    assert "checkpoints: last" in shown.output and "best (" not in shown.output
    assert f"warning: {fold_run / 'checkpoints/best/meta.json'}: damaged" in " ".join(shown.output.split())
    events = fold_run / "events.jsonl"
    events.write_text("".join(events.read_text().splitlines(keepends=True)[:3]))  # cut before the first epoch
    write_status(fold_run, {"state": "finished", "epoch": 2, "epochs": 2})
    shown = runner.invoke(app, ["runs", "show", fold_run.name])
    assert "warning: events.jsonl holds 0 of the 2 epochs trained" in " ".join(shown.output.split())
    assert "none finished yet" not in shown.output


def test_runs_diff_of_a_renamed_run_shows_only_the_name_and_fits_the_terminal(isolated_dirs: Path) -> None:
    from engine.config import renamed

    root = isolated_dirs / "runs"
    long_name = "lr-sweep-by-hand-with-a-name-long-enough-to-need-folding-at-eighty-columns"
    for name, config in (("plain", resolve_experiment("quickstart")),
                         ("renamed", renamed(resolve_experiment("quickstart", ["optim.lr=0.07"]), long_name))):
        write_config(create_run(root, config.name if name == "renamed" else name), config)
    result = runner.invoke(app, ["runs", "diff", "plain", long_name], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    keys = [line.split("│")[1].strip() for line in lines if line.startswith("│") and line.split("│")[1].strip()]
    assert keys == ["name", "optim.lr"]  # both made from quickstart: no `experiment  —  quickstart` row
