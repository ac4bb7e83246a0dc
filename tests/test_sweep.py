"""Sweeps (issue 12, first slice): real Optuna studies in real SQLite, real digits trainings (1 epoch, 300 images)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from conftest import write
from console.cli import app
from engine.annotations import read_annotations
from engine.runtime import StopRequest
from engine.sweep import create_study, load_spec, open_named, open_storage, storage_url, trial_rows
from engine.sweep_trials import run_sweep

QUICK = ["--set", "train.epochs=1", "data.limit=300"]
SPEC = """\
description: three learning rates of the digits quickstart
base: quickstart
params:
  optim.lr: {choices: [0.02, 0.05, 0.1]}
sampler: grid
pruner: none
"""


def invoke(*args: str) -> object:
    """Run the CLI in-process and return the result."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_grid_sweep_makes_tagged_run_folders_and_show_ranks_them(isolated_dirs: Path) -> None:
    spec = write(isolated_dirs / "digits-lr.yaml", SPEC)
    result = invoke("sweep", "run", str(spec), *QUICK, "--quiet")
    assert result.exit_code == 0, result.output
    assert (isolated_dirs / "runs" / "sweeps" / "digits-lr.db").is_file()

    shown = invoke("sweep", "show", "digits-lr", "--json")
    summary = json.loads(shown.stdout)
    ranked = summary["ranked"]
    assert summary["done"] == summary["trials"] == 3
    assert sorted(row["params"]["optim.lr"] for row in ranked) == [0.02, 0.05, 0.1]
    values = [row["val_acc"] for row in ranked]
    assert values == sorted(values, reverse=True) and all(row["state"] == "complete" for row in ranked)
    assert [row["best"] for row in ranked] == [True, False, False]
    assert summary["best_trial"] == ranked[0]["trial"]
    for row in ranked:
        run_dir = Path(row["run_dir"])
        assert run_dir.name.startswith(f"digits-lr-t{row['trial']}-")
        assert (run_dir / "config.yaml").is_file()
        assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
        assert read_annotations(run_dir).tags == ["sweep-digits-lr", f"trial-{row['trial']}"]

    listed = invoke("sweep", "list", "--json")
    assert [(s["sweep"], s["done"], s["trials"]) for s in json.loads(listed.stdout)] == [("digits-lr", 3, 3)]

    reported = invoke("sweep", "report", "digits-lr", "--out", str(isolated_dirs / "report"), "--json")
    assert reported.exit_code == 0, reported.output
    made = json.loads(reported.stdout)
    text = Path(made["report"]).read_text(encoding="utf-8")
    assert text.startswith("# Sweep digits-lr") and "(best)" in text and "## The best trial" in text
    assert all(Path(row["run_dir"]).name in text for row in ranked)  # every trial's run in the table
    assert "Parameters against the metric" in text and len(made["figures"]) >= 2  # params figure + best curves
    for figure in made["figures"]:
        assert Path(figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    missing = invoke("sweep", "report", "nope", "--out", str(isolated_dirs / "r2"))
    assert missing.exit_code != 0 and missing.stderr.count("\n") == 1 and "no sweep named 'nope'" in missing.stderr


def test_resume_continues_a_stopped_sweep_to_its_total(isolated_dirs: Path) -> None:
    """A sweep stopped after one trial (its StopRequest set, as Ctrl-C does), with a trial left running by a
    killed process: `sweep resume` records that one failed and runs the grid's two other points."""
    spec_path = write(isolated_dirs / "digits-lr.yaml", SPEC)
    overrides = ["train.epochs=1", "data.limit=300"]
    spec = load_spec(str(spec_path), overrides)
    study = create_study(spec, open_storage(storage_url(isolated_dirs / "runs", spec.name, None)), overrides)
    stop = StopRequest()
    first = run_sweep(study, spec, overrides, isolated_dirs / "runs", stop=stop,
                      on_trial=lambda trial: setattr(stop, "count", 1))
    assert (first["done"], first["trials"]) == (1, 3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = study.ask()  # a trial a killed worker was running: RUNNING forever in the study
    killed.set_user_attr("host", socket.gethostname())
    killed.set_user_attr("pid", int(dead.stdout))

    result = invoke("sweep", "resume", "digits-lr", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["trials"]) == (3, 3)
    states = {row["trial"]: row["state"] for row in summary["ranked"]}
    assert states[killed.number] == "fail"
    completed = [row for row in summary["ranked"] if row["state"] == "complete"]
    assert sorted(row["params"]["optim.lr"] for row in completed) == [0.02, 0.05, 0.1]
    assert open_named(isolated_dirs / "runs", "digits-lr", None)[0].user_attrs["trials"] == 3


def test_a_pruned_trial_stops_its_run_gracefully_and_is_recorded_pruned(isolated_dirs: Path) -> None:
    """Optuna's threshold pruner (val_acc can never reach 2) prunes at the first report: the run stops before
    its second epoch, saved and `interrupted` (resumable by hand), and the study records the trial pruned."""
    spec_path = write(isolated_dirs / "digits-lr.yaml", SPEC)
    overrides = ["train.epochs=3", "data.limit=300"]
    spec = load_spec(str(spec_path), overrides)
    study = create_study(spec, open_storage(storage_url(isolated_dirs / "runs", spec.name, None)), overrides)
    study.pruner = optuna.pruners.ThresholdPruner(lower=2.0)
    summary = run_sweep(study, spec, overrides, isolated_dirs / "runs", trials=1)
    (row,) = summary["ranked"]
    assert (row["state"], row["epochs"], row["best"], summary["done"]) == ("pruned", 1, False, 1)
    status = json.loads((Path(row["run_dir"]) / "status.json").read_text())
    assert status["state"] == "interrupted" and "pruned by its sweep" in status["reason"]
    assert (Path(row["run_dir"]) / "checkpoints" / "last").is_dir()


@pytest.mark.parametrize(("params", "expected"), [
    ("  optim.lrr: {choices: [0.1]}", "bad.yaml: params.optim.lrr: unknown key (did you mean `lr`?)"),
    ("  optim.lr: {choices: []}", "bad.yaml: params.optim.lr.choices: expected a non-empty list of values"),
    ("  optim.lr: {low: 0.5, high: 0.1, log: true}", "bad.yaml: params.optim.lr.low: 0.5 is greater than high 0.1"),
    ("  schedule: [cosine, nope]", "bad.yaml: params.schedule: 'nope': no schedule preset named 'nope'"),
])
def test_a_bad_spec_is_one_line_naming_file_and_key_before_any_trial(isolated_dirs: Path, params: str,
                                                                      expected: str) -> None:
    write(isolated_dirs / "bad.yaml", f"base: quickstart\nparams:\n{params}\n")
    result = invoke("sweep", "run", "bad.yaml")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + expected), lines
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").glob("bad-*"))
    assert not (isolated_dirs / "runs" / "sweeps" / "bad.db").exists()


def test_an_unknown_spec_key_and_too_many_grid_trials_are_refused(isolated_dirs: Path) -> None:
    write(isolated_dirs / "odd.yaml", SPEC + "samplr: tpe\n")
    result = invoke("sweep", "run", "odd.yaml")
    assert result.exit_code == 2 and "odd.yaml: samplr: unknown key (did you mean `sampler`?)" in result.stderr
    write(isolated_dirs / "digits-lr.yaml", SPEC)
    result = invoke("sweep", "run", "digits-lr.yaml", "--trials", "4")
    assert result.exit_code == 2 and "--trials 4: more than the 3 points of the grid" in result.stderr
    assert not (isolated_dirs / "runs" / "sweeps" / "digits-lr.db").exists()


def test_presets_validate_knows_a_sweep_spec(isolated_dirs: Path) -> None:
    """`presets validate` checks a sweep spec as `sweep run` would (it is not an experiment with a `params` key)."""
    REPO = Path(__file__).resolve().parents[1]
    good = invoke("presets", "validate", str(REPO / "presets" / "sweep" / "quickstart-lr-batch.yaml"))
    assert good.exit_code == 0 and "is a valid sweep preset" in good.stderr  # type: ignore[attr-defined]
    bad = write(isolated_dirs / "mine.yaml", "base: quickstart\nparams:\n  optim.lrr: [0.1]\n")
    refused = invoke("presets", "validate", str(bad))
    assert refused.exit_code == 2  # type: ignore[attr-defined]
    assert f"{bad}: params.optim.lrr" in refused.stderr and "did you mean `lr`" in refused.stderr  # type: ignore[attr-defined]


def test_a_trial_queued_again_shows_its_values_while_it_waits(isolated_dirs: Path) -> None:
    """An interrupted trial's values are queued to run first on resume; until then the ranked rows (and so
    `sweep show` and the Sweeps screen) show them on the waiting trial."""
    from engine.sweep_trials import mark_interrupted

    spec = load_spec(str(write(isolated_dirs / "digits-lr.yaml", SPEC)), [])
    study = create_study(spec, open_storage(storage_url(isolated_dirs / "runs", spec.name, None)), [])
    study.ask({"optim.lr": optuna.distributions.CategoricalDistribution([0.02, 0.05, 0.1])})
    trial = study.trials[-1]  # running, as a sweep's worker sees it when a person stops the sweep
    mark_interrupted(study, trial)
    rows = {row["state"]: row for row in trial_rows(study, spec)}
    assert set(rows) == {"fail", "waiting"}
    assert rows["waiting"]["params"] == rows["fail"]["params"] == trial.params


def test_a_sweep_whose_base_preset_is_gone_is_still_listed_shown_and_reported(isolated_dirs: Path) -> None:
    base = write(isolated_dirs / "user-presets" / "experiment" / "mine.yaml",
                 "base: quickstart\nname: mine\ntrain: {epochs: 1}\ndata: {limit: 300}\n")
    spec = write(isolated_dirs / "mine-lr.yaml", "base: mine\nparams:\n  optim.lr: {choices: [0.05]}\n"
                                                 "sampler: grid\npruner: none\n")
    assert invoke("sweep", "run", str(spec), "--quiet").exit_code == 0
    write(isolated_dirs / "runs" / "sweeps" / "broken.db", "not a database")
    base.unlink()  # the user removed or renamed the preset the sweep was started from

    listed = invoke("sweep", "list")
    assert listed.exit_code == 0, listed.output
    assert "mine-lr  mine  grid  1/1 trials" in listed.stdout  # not: one error for the whole list
    assert "broken  cannot be read:" in listed.stdout
    shown = json.loads(invoke("sweep", "show", "mine-lr", "--json").stdout)
    assert shown["done"] == 1 and shown["ranked"][0]["state"] == "complete"
    assert invoke("sweep", "report", "mine-lr", "--out", str(isolated_dirs / "report")).exit_code == 0
    resumed = invoke("sweep", "resume", "mine-lr", "--trials", "2")  # new trials need the base: said in a line
    assert resumed.exit_code != 0 and resumed.stderr.count("\n") == 1
    assert "base: no experiment preset named 'mine'" in resumed.stderr


def test_a_stop_asked_once_a_trials_run_has_trained_all_its_epochs_keeps_that_trial(isolated_dirs: Path) -> None:
    """Ctrl-C while a trial's run scores its test split (its epochs all trained): the trial is complete with its
    value, not thrown away and trained again on resume."""
    spec_path = write(isolated_dirs / "digits-lr.yaml", SPEC)
    overrides = ["train.epochs=1", "data.limit=300"]
    spec = load_spec(str(spec_path), overrides)
    study = create_study(spec, open_storage(storage_url(isolated_dirs / "runs", spec.name, None)), overrides)
    stop = StopRequest()

    def stop_at_the_test_pass(event: dict) -> None:
        if event.get("type") == "test":
            stop.count = 1

    result = run_sweep(study, spec, overrides, isolated_dirs / "runs", stop=stop,
                       listeners=lambda trial: [stop_at_the_test_pass])
    assert (result["done"], result["trials"]) == (1, 3)  # stopped after the first trial, which counts
    (row,) = result["ranked"]
    assert row["state"] == "complete" and row["val_acc"] is not None
    assert json.loads((Path(row["run_dir"]) / "status.json").read_text())["state"] == "finished"
