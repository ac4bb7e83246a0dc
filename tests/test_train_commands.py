"""finetune, lr-find and schedule preview through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from console.cli import app
from engine.runs import read_config, read_status

runner = CliRunner()
QUICK = ["--set", "data.limit=300", "--set", "train.epochs=2"]


def test_finetune_records_parent_and_starts_from_weights(tmp_path: Path) -> None:
    first = runner.invoke(app, ["train", "quickstart", "--json", "-q", *QUICK])
    assert first.exit_code == 0, first.output
    parent = json.loads(first.stdout)
    tuned = runner.invoke(app, ["finetune", f"{Path(parent['run_dir']).name}:last", "--json", "-q", *QUICK,
                                "--set", "optim.lr=0.2", "--set", "train.epochs=1"])
    assert tuned.exit_code == 0, tuned.output
    child = json.loads(tuned.stdout)
    status = read_status(Path(child["run_dir"]))
    assert status["parent"] == f"{Path(parent['run_dir']).name}:last"
    assert status["final"]["train_acc"] > 0.5  # one epoch from trained weights is far above chance
    config = read_config(Path(child["run_dir"]))  # the run's own record says where its weights came from
    assert config.model.pretrained == str(Path(parent["run_dir"]).resolve() / "checkpoints/last/weights.safetensors")
    events = [json.loads(line) for line in (Path(child["run_dir"]) / "events.jsonl").read_text().splitlines()]
    assert [e["source"] for e in events if e["type"] == "weights_loaded"] == [config.model.pretrained]
    refused = runner.invoke(app, ["finetune", Path(parent["run_dir"]).name, "--set", "model.options.channels=[4]"])
    assert refused.exit_code == 2 and "model.options" in refused.output
    # into an experiment named: a run of it from these weights, named apart (`quickstart` still names the parent)
    into = runner.invoke(app, ["finetune", Path(parent["run_dir"]).name, "quickstart", "--json", "-q", *QUICK,
                               "--set", "train.epochs=1"])
    assert into.exit_code == 0, into.output
    tuned_dir = Path(json.loads(into.stdout)["run_dir"])
    assert tuned_dir.name.startswith("quickstart-ft-")
    said = runner.invoke(app, ["runs", "show", tuned_dir.name]).stdout.splitlines()[1]
    assert said.endswith(f" · from {Path(parent['run_dir']).name}:best")  # where its weights came from
    shown = runner.invoke(app, ["runs", "show", "quickstart", "--json"])
    assert json.loads(shown.stdout)["run_dir"] == parent["run_dir"]


def test_lr_find_saves_series_and_suggests(tmp_path: Path) -> None:
    out = tmp_path / "lr.json"
    result = runner.invoke(app, ["lr-find", "quickstart", "--steps", "60", "--out", str(out), "--json",
                                 "--set", "data.limit=300"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    series = json.loads(out.read_text())["series"]
    assert 10 <= len(series) <= 60 and summary["suggested_lr"] > 0
    assert series[1]["lr"] > series[0]["lr"]


def test_schedule_preview_json_and_drops() -> None:
    result = runner.invoke(app, ["schedule", "preview", "quickstart", "--json", "--steps-per-epoch", "10",
                                 "--set", "schedule.name=multistep", "--set", "schedule.milestones=[5, 10]"])
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)
    assert len(preview["series"]) == 150 and preview["drops"] == [5.0, 10.0]
    text = runner.invoke(app, ["schedule", "preview", "quickstart", "--steps-per-epoch", "10"])
    assert text.exit_code == 0 and "epoch   15" in text.stdout


def test_epoch_checkpoint_names_are_forgiving() -> None:
    from engine.members import parse_ref
    from engine.runs import runs_dir

    trained = runner.invoke(app, ["train", "quickstart", "--json", "-q", *QUICK, "--set", "train.checkpoint.every=1"])
    assert trained.exit_code == 0, trained.output
    run = Path(json.loads(trained.stdout)["run_dir"]).name
    for spelling in ("epoch-2", "epoch2", "2", "epoch-002"):
        assert parse_ref(runs_dir(), f"{run}:{spelling}").name == "epoch-002"


def test_a_log_that_is_not_a_terminal_gets_plain_progress_lines_during_an_epoch(isolated_dirs: Path) -> None:
    """No bars are drawn into a file (nohup, a batch job's log): plain lines say how far a long epoch has come
    (every 30 s; every step here), then each epoch's line as on a terminal."""
    import io

    from rich.console import Console

    from console.progress import ProgressListener
    from engine.presets import resolve_experiment
    from engine.runner import start_run

    log = io.StringIO()
    listener = ProgressListener(Console(file=log, width=200))
    assert listener.plain
    listener.plain_every_s = 0.0
    with listener:
        status = start_run(resolve_experiment("quickstart", ["train.epochs=1", "data.limit=300"]),
                           isolated_dirs / "runs", listeners=[listener])
    assert status["state"] == "finished"
    lines = log.getvalue().splitlines()
    steps = [line for line in lines if line.startswith("  epoch 1 step ")]
    assert steps and all("/" in line.split()[3] and "img/s" in line for line in steps), lines
    assert any(line.startswith("epoch   1  train loss") for line in lines)
    terminal = ProgressListener(Console(file=io.StringIO(), force_terminal=True))
    assert not terminal.plain  # bars there, no extra lines
