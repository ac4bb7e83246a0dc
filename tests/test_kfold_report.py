"""k-fold end to end, run comparison and diffs, and the Markdown report with its PNG figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from console.cli import app
from engine.compare import compare_runs, diff_configs, expand_targets, flatten, select_runs, sort_rows
from engine.errors import ConfigError
from engine.presets import resolve_experiment
from engine.runs import list_runs, read_config
from engine.runner import start_run

runner = CliRunner()
FAST = ["data.limit=300", "train.epochs=3"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A runs folder with three quickstart runs (two LR schedules) and one 3-fold group run by the CLI."""
    root = tmp_path_factory.mktemp("kfold") / "runs"
    variants = [["name=cosine-a"], ["name=cosine-b", "train.seed=1"],
                ["name=steps", "schedule.name=multistep", "schedule.milestones=[1,2]", "optim.lr=0.1"]]
    for extra in variants:
        assert start_run(resolve_experiment("quickstart", [*FAST, *extra]), root)["state"] == "finished"
    result = runner.invoke(app, ["kfold", "quickstart", "--folds", "3", "--set", "data.limit=300", "--set",
                                 "train.epochs=3", "--runs-dir", str(root), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    return root, json.loads(result.stdout)


def test_kfold_runs_folds_and_evaluates_their_ensemble_on_test(home: tuple[Path, dict]) -> None:
    root, record = home
    group = Path(record["group_dir"])
    assert record["state"] == "finished" and group.parent == root and group.name.startswith("quickstart-kfold-")
    assert json.loads((group / "kfold.json").read_text())["state"] == "finished"
    assert [f["fold"] for f in record["per_fold"]] == [0, 1, 2]
    for fold in record["per_fold"]:
        config = read_config(Path(fold["run_dir"]))
        assert (config.data.folds, config.data.fold) == (3, fold["fold"]) and Path(fold["run_dir"]).parent == group
        assert 0.3 < fold["best_val_acc"] <= 1.0 and 0.3 < fold["test_acc"] <= 1.0
    ensemble = record["ensemble"]
    assert ensemble["split"] == "test" and len(ensemble["members"]) == 3 and 0.5 < ensemble["accuracy"] <= 1.0
    assert record["cv"]["best_val_acc_std"] >= 0 and Path(ensemble["path"]).parent == group
    listed = {r.name for r in list_runs(root)}
    assert all(f"{group.name}/{f['run']}" in listed for f in record["per_fold"])
    assert [p.name for p in expand_targets(root, [group.name[:18]])] == [f["run"] for f in record["per_fold"]]


def test_eval_of_a_kfold_group_evaluates_each_fold(home: tuple[Path, dict]) -> None:
    root, record = home
    result = runner.invoke(app, ["eval", Path(record["group_dir"]).name, "--json", "--runs-dir", str(root)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["evaluations"]
    assert [r["run"] for r in rows] == [f["run"] for f in record["per_fold"]]
    assert [r["accuracy"] for r in rows] == pytest.approx([f["test_acc"] for f in record["per_fold"]])


def test_a_prefix_of_both_a_run_and_a_group_is_ambiguous(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    (root / "quickstart-kfold-1").mkdir(parents=True)
    (root / "quickstart-kfold-1" / "kfold.json").write_text("{}")
    assert start_run(resolve_experiment("quickstart", ["data.limit=200", "train.epochs=1"]), root)["state"]
    result = runner.invoke(app, ["eval", "quick", "--runs-dir", str(root)])  # `quickstart` is the run's own name
    assert result.exit_code == 2 and "matches the k-fold group quickstart-kfold-1 and the run quickstart-" in result.output


def test_more_folds_than_the_smallest_class_is_refused_and_leaves_no_group(tmp_path: Path) -> None:
    result = runner.invoke(app, ["kfold", "quickstart", "--folds", "50", "--set", "data.limit=300",
                                 "--runs-dir", str(tmp_path / "runs")], terminal_width=200)
    assert result.exit_code == 2 and "has only 29 images in the training pool" in result.output
    assert not list((tmp_path / "runs").glob("quickstart-kfold-*"))


def test_kfold_needs_two_folds() -> None:
    result = runner.invoke(app, ["kfold", "quickstart", "--folds", "1"], terminal_width=200)
    assert result.exit_code == 2 and "--folds" in result.output


def test_compare_and_diff(home: tuple[Path, dict]) -> None:
    root, _record = home
    runs = select_runs(root, ["cosine-a", "cosine-b", "steps"])
    compared = compare_runs(runs, sort="test_acc", descending=True)
    assert "train.seed" in compared["keys"] and "schedule.name" in compared["keys"] and "name" not in compared["keys"]
    accuracies = [r["metrics"]["test_acc"] for r in compared["rows"]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert {r["name"].split("-2")[0] for r in compared["rows"]} == {"cosine-a", "cosine-b", "steps"}
    with pytest.raises(ConfigError, match="--sort"):
        sort_rows(compared["rows"], "no.such.key")
    assert len(select_runs(root, [], state="finished")) == 6 and select_runs(root, [], model="resnet") == []
    result = runner.invoke(app, ["runs", "diff", "cosine-a", "steps", "--runs-dir", str(root), "--json"])
    assert result.exit_code == 0, result.output
    keys = {row["key"]: (row["a"], row["b"]) for row in json.loads(result.stdout)["differences"]}
    assert keys["schedule.name"] == ("cosine", "multistep") and keys["optim.lr"] == (0.05, 0.1)
    table = runner.invoke(app, ["runs", "compare", "--sort", "best_val_acc", "--desc", "--runs-dir", str(root)],
                          terminal_width=250)
    assert table.exit_code == 0 and "data.fold" in table.stdout and "steps" in table.stdout


def test_diff_and_sort_rules() -> None:
    a = flatten({"optim": {"lr": 0.1, "betas": [0.9, 0.99]}, "model": {"options": {}}})
    b = flatten({"optim": {"lr": 0.2, "betas": [0.9, 0.99]}, "model": {"options": {"width": 3}}})
    assert diff_configs(a, b) == [{"key": "model.options", "a": {}, "b": "<missing>"},
                                  {"key": "model.options.width", "a": "<missing>", "b": 3},
                                  {"key": "optim.lr", "a": 0.1, "b": 0.2}]
    rows = [{"name": n, "metrics": {"test_acc": v}, "config": {}} for n, v in (("a", 0.5), ("b", None), ("c", 0.9))]
    assert [r["name"] for r in sort_rows(rows, "test_acc")] == ["a", "c", "b"]
    assert [r["name"] for r in sort_rows(rows, "test_acc", descending=True)] == ["c", "a", "b"]


def test_report_writes_markdown_with_png_figures(home: tuple[Path, dict], tmp_path: Path) -> None:
    root, record = home
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "cosine-a", "cosine-b", "steps", Path(record["group_dir"]).name,
                                 "--out", str(out), "--title", "Digits ladder", "--runs-dir", str(root), "--json"])
    assert result.exit_code == 0, result.output
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# Digits ladder") and "## Comparison" in markdown and "(3 folds)" in markdown
    assert "schedule.name" in markdown and "multistep" in markdown
    assert "LR drops after epoch" in markdown and "Fold ensemble" in markdown
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(images) == 1 + 4 + 6 + 1  # comparison bars, 3 runs + 1 group of curves, 6 confusion matrices, the fold ensemble's
    for relative in images:
        with Image.open(out / relative) as image:
            assert image.format == "PNG" and image.size[0] > 100
    assert sorted(json.loads(result.stdout)["figures"]) == sorted(str(out / p) for p in images)
    again = runner.invoke(app, ["report", "steps", "--out", str(out), "--runs-dir", str(root), "--json"])
    assert again.exit_code == 0 and len(json.loads(again.stdout)["figures"]) == 3  # not the earlier report's


def test_ensemble_accepts_a_kfold_group_name(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from console.cli import app

    runner = CliRunner()
    made = runner.invoke(app, ["kfold", "quickstart", "--folds", "2", "--json", "--set", "train.epochs=1",
                               "--set", "data.limit=300"])
    assert made.exit_code == 0, made.output
    group = next(p for p in (tmp_path / "runs").iterdir() if "kfold" in p.name)
    result = runner.invoke(app, ["ensemble", group.name, "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["members"]) == 2


def test_runs_show_of_a_kfold_group_prints_its_folds(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from console.cli import app

    runner = CliRunner()
    made = runner.invoke(app, ["kfold", "quickstart", "--folds", "2", "--set", "train.epochs=1",
                               "--set", "data.limit=300"])
    assert made.exit_code == 0, made.output
    group = next(p for p in (tmp_path / "runs").iterdir() if "kfold" in p.name)
    shown = runner.invoke(app, ["runs", "show", group.name], terminal_width=200)
    assert shown.exit_code == 0 and "2-fold" in shown.stdout and "fold ensemble" in shown.stdout


def _stop_at(stop: object, fold: str, event_type: str, count: int) -> object:
    """A listener asking `stop` for a graceful stop at the `count`-th `event_type` event of fold run `fold`."""
    seen = {"run": "", "n": 0}

    def listen(event: dict) -> None:
        if event["type"] == "run_start":
            seen["run"], seen["n"] = event["name"], 0
        elif event["type"] == event_type and f"-{fold}-" in seen["run"]:
            seen["n"] += 1
            if seen["n"] == count:
                stop.count = 1  # type: ignore[attr-defined]  # as a first Ctrl-C does

    return listen


def test_an_interrupted_kfold_resumes_to_its_end(tmp_path: Path) -> None:
    """Fold 1 killed before its first checkpoint (a graceful stop saves one: removed here), then fold 2 stopped
    after its first epoch: `resume GROUP` keeps the finished folds, trains fold 1 again, resumes fold 2 from its
    checkpoint, and evaluates the fold ensemble as the group was started (tta flip)."""
    import shutil

    from engine.kfold import read_record, resume_kfold, run_kfold, write_record
    from engine.runtime import StopRequest

    root = tmp_path / "runs"
    config = resolve_experiment("quickstart", FAST)
    stop = StopRequest()
    record = run_kfold(config, 3, root, listeners=[_stop_at(stop, "fold1", "step", 1)], stop=stop, tta="flip")
    group = Path(record["group_dir"])
    assert record["state"] == "interrupted" and [f["state"] for f in record["per_fold"]] == ["finished", "interrupted"]
    first_fold1 = Path(record["per_fold"][1]["run_dir"])
    shutil.rmtree(first_fold1 / "checkpoints")
    stop = StopRequest()
    record = resume_kfold(group, listeners=[_stop_at(stop, "fold2", "epoch", 1)], stop=stop)
    assert [f["state"] for f in record["per_fold"]] == ["finished", "finished", "interrupted"]
    assert record["per_fold"][1]["run_dir"] != str(first_fold1)  # no checkpoint to resume: trained again
    assert record["cv"]["folds_finished"] == 2  # the interrupted fold is no estimate: left out of the mean
    shown = runner.invoke(app, ["runs", "show", group.name, "--runs-dir", str(root)]).output
    assert "(over the 2 finished folds)" in shown
    assert f"`imgcls-console resume {group.name}` finishes it" in " ".join(shown.split())
    fold2 = record["per_fold"][2]["run_dir"]
    result = runner.invoke(app, ["resume", group.name, "--runs-dir", str(root), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record == read_record(group) and record["state"] == "finished"
    assert [f["state"] for f in record["per_fold"]] == ["finished"] * 3 and record["per_fold"][2]["run_dir"] == fold2
    assert record["ensemble"]["tta"] == "flip" and record["ensemble"]["accuracy"] > 0.5  # as the group was started
    assert record["cv"]["best_val_acc_mean"] is not None and "error" not in record
    again = runner.invoke(app, ["resume", group.name, "--runs-dir", str(root)])
    assert again.exit_code == 2 and "nothing to resume" in again.output
    failed = {**record, "state": "failed", "ensemble": None, "error": "fold ensemble: OSError: disk full"}
    write_record(group, failed)  # every fold trained, the ensemble failed: a resume evaluates it, training nothing
    runs_before = sorted(p.name for p in group.iterdir())
    record = resume_kfold(group)
    assert record["state"] == "finished" and record["ensemble"]["accuracy"] > 0.5 and "error" not in record
    assert sorted(p.name for p in group.iterdir()) == runs_before


def test_greedy_selection_over_folds_says_why_it_cannot(home: tuple[Path, dict]) -> None:
    """Greedy selection scores members on val, and each fold has its own: the refusal names greedy and the way
    out (it named only the val sets, though the split asked for was test)."""
    root, record = home
    result = runner.invoke(app, ["ensemble", Path(record["group_dir"]).name, "--greedy", "--runs-dir", str(root)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "greedy selection scores the members on the val split" in text and "turn greedy off" in text
