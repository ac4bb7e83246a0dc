"""Sweeps with several workers (issue 12): local worker processes sharing one SQLite study, a worker killed
mid-trial, the time budget, the Slurm path through submitit's local executor, parameter importances. Real
Optuna, real SQLite, real processes, real digits trainings (1 epoch on 300 images unless a test needs longer)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from conftest import write
from console.cli import app
from engine.sweep import create_study, load_spec, open_named, open_storage, storage_url
from engine.sweep_trials import run_sweep

QUICK = ["--set", "train.epochs=1", "data.limit=300"]
GRID = """\
description: four learning rates of the digits quickstart
base: quickstart
params:
  optim.lr: {choices: [0.01, 0.02, 0.05, 0.1]}
sampler: grid
pruner: none
"""


def cli(*args: str, runs: Path) -> subprocess.CompletedProcess[str]:
    """The real program in a subprocess (workers are processes of their own)."""
    env = {**os.environ, "IMGCLS_RUNS_DIR": str(runs)}
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def invoke(*args: str) -> Any:
    """The CLI in this process (isolated_dirs points IMGCLS_RUNS_DIR at the test's runs folder)."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def counted(name: str, runs: Path) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that count towards its budget."""
    study, _, _ = open_named(runs, name, None)
    return [t for t in study.trials if t.state.is_finished() and not t.user_attrs.get("interrupted")]


def test_two_workers_share_a_study_and_a_killed_ones_trial_runs_again(isolated_dirs: Path) -> None:
    """Two worker processes pull trials from one SQLite study; one is killed mid-trial: the other runs that trial's
    values again, the budget stays exact, and `sweep resume` finds the sweep whole."""
    runs = isolated_dirs / "runs"
    spec = write(isolated_dirs / "lr4.yaml", GRID)
    env = {**os.environ, "IMGCLS_RUNS_DIR": str(runs)}
    parent = subprocess.Popen([sys.executable, "-m", "console.cli", "sweep", "run", str(spec), "--workers", "2",
                               "--set", "train.epochs=4", "data.limit=300"], stderr=subprocess.PIPE, text=True,
                              env=env)
    assert parent.stderr is not None
    for line in parent.stderr:  # the first trial's run has started: kill the worker that runs it
        if line.startswith("trial ") and ": run " in line:
            victim = int(line.split()[1].rstrip(":"))
            break
    study, _, _ = open_named(runs, "lr4", None)
    pid = study.trials[victim].user_attrs["pid"]
    os.kill(pid, signal.SIGKILL)
    rest = parent.stderr.read()
    assert parent.wait(timeout=300) == 2
    assert rest.strip().splitlines()[-1].startswith("error: sweep lr4: worker ")  # one line naming the worker
    study, _, _ = open_named(runs, "lr4", None)
    killed = study.trials[victim]
    assert killed.state.name == "FAIL" and killed.user_attrs["interrupted"]
    rerun = [t for t in study.trials if t.user_attrs.get("rerun_of") == victim]
    assert len(rerun) == 1 and rerun[0].params == killed.params  # the other worker ran its values again
    trials = counted("lr4", runs)
    assert len(trials) == 4 and len({t.user_attrs.get("pid") for t in study.trials} - {None}) == 2  # 2 workers
    for trial in trials:
        run_dir = Path(trial.user_attrs["run_dir"])
        assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
        assert "cpu_threads: 1" in (run_dir / "config.yaml").read_text()  # the 2 cores shared out between workers

    resumed = cli("sweep", "resume", "lr4", "--json", runs=runs)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["done"] == 4  # nothing left to do, nothing run twice
    assert sorted(t.params["optim.lr"] for t in counted("lr4", runs)) == [0.01, 0.02, 0.05, 0.1]  # every grid point
    assert list(summary["importances"]) == ["optim.lr"]


def test_the_time_budget_starts_no_trial_after_it(isolated_dirs: Path) -> None:
    """A trial that ends after the budget is spent is the last one; `resume --time` finishes the sweep. The slow
    trial is made slow on purpose (its end is held until the budget has passed), so the test does not depend on
    how fast this machine trains."""
    runs = isolated_dirs / "runs"
    spec_file = write(isolated_dirs / "lr4.yaml", GRID + "time: 0.5s\n")
    spec = load_spec(str(spec_file), QUICK[1:])
    assert spec.time_limit == 0.5
    study = create_study(spec, open_storage(storage_url(runs, spec.name, None)), QUICK[1:])

    def slow(trial: optuna.trial.FrozenTrial) -> None:
        time.sleep(spec.time_limit)  # noqa: the budget started before this trial did, so it is spent now

    summary = run_sweep(study, spec, QUICK[1:], runs, on_trial=slow)
    assert summary["done"] == 1 and summary["trials"] == 4 and summary["time_limit"] == 0.5
    assert invoke("sweep", "resume", "lr4", "--time", "1h", "--quiet").exit_code == 0  # --time over the spec's
    assert len(counted("lr4", runs)) == 4


def test_a_time_budget_in_the_spec_reaches_the_summary(isolated_dirs: Path) -> None:
    spec = write(isolated_dirs / "lr4.yaml", GRID + "time: 1h\n")
    done = invoke("sweep", "run", str(spec), *QUICK, "--trials", "1", "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["done"] == 1 and summary["time_limit"] == 3600


@pytest.mark.parametrize(("args", "says"), [
    (["--time", "soon"], "error: --time soon: expected a positive time"),
    (["--gpus", " , "], "error: --gpus ' , ': expected GPU ids"),
    (["--workers", "4096"], "error: --workers 4096: this machine has"),
])
def test_bad_worker_options_are_one_line_errors_before_any_trial(isolated_dirs: Path, args: list[str],
                                                                says: str) -> None:
    runs = isolated_dirs / "runs"
    spec = write(isolated_dirs / "lr4.yaml", GRID)
    refused = invoke("sweep", "run", str(spec), *args)
    assert refused.exit_code == 2 and refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert refused.stderr.startswith(says)
    assert not (runs / "sweeps" / "lr4.db").exists()


def test_a_bad_time_or_pruner_in_the_spec_names_its_key(isolated_dirs: Path) -> None:
    bad_time = invoke("sweep", "run", str(write(isolated_dirs / "t.yaml", GRID + "time: -5\n")))
    assert bad_time.exit_code == 2 and "t.yaml: time: expected a positive time" in bad_time.stderr
    halving = GRID.replace("pruner: none", "pruner: halvng")
    bad_pruner = invoke("sweep", "run", str(write(isolated_dirs / "p.yaml", halving)))
    assert bad_pruner.exit_code == 2 and "p.yaml: pruner: 'halvng' is not one of" in bad_pruner.stderr
    assert "did you mean `halving`" in bad_pruner.stderr


def test_submitit_jobs_pull_trials_from_the_same_study(isolated_dirs: Path) -> None:
    """The Slurm path through submitit's local executor: real job processes, the study the laptop started."""
    pytest.importorskip("submitit")
    runs = isolated_dirs / "runs"
    spec = write(isolated_dirs / "lr4.yaml", GRID.replace("sampler: grid", "sampler: random\ntrials: 3\nseed: 3")
                 .replace("pruner: none", "pruner: hyperband"))
    started = invoke("sweep", "run", str(spec), "--trials", "1", *QUICK, "--quiet")  # in this process
    assert started.exit_code == 0, started.output
    submitted = cli("sweep", "submit", "lr4", "--cluster", "local", "--jobs", "2", "--trials", "3", runs=runs)
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted 2 jobs" in submitted.stderr and "Traceback" not in submitted.stderr
    trials = counted("lr4", runs)
    assert len(trials) == 3
    by_process = Counter(t.user_attrs["pid"] for t in trials)
    assert len(by_process) >= 2  # the laptop's process and at least one job's (two jobs share the last 2 trials)
    logs = list((runs / "sweeps" / "lr4-jobs").glob("*_log.out"))
    assert len(logs) == 2 and oct((runs / "sweeps" / "lr4-jobs").stat().st_mode & 0o777) == "0o700"


def test_a_tpe_sweep_with_pruning_on_two_workers_records_its_pruned_trial(isolated_dirs: Path) -> None:
    """TPE and successive halving with two worker processes on one SQLite study. A good trial runs first, then a
    learning rate that cannot learn in an epoch is queued: whichever worker takes it, halving compares it with the
    good trial at the first rung and prunes it; its run stops gracefully and stays a run folder."""
    runs = isolated_dirs / "runs"
    spec_file = write(isolated_dirs / "tpe-halving.yaml", """\
description: TPE with successive halving on the digits quickstart
base: quickstart
params:
  optim.lr: {low: 0.00001, high: 0.2, log: true}
sampler: tpe
pruner: halving
trials: 4
""")
    overrides = ["train.epochs=3", "data.limit=300"]
    spec = load_spec(str(spec_file), overrides)
    study = create_study(spec, open_storage(storage_url(runs, spec.name, None)), overrides)
    study.enqueue_trial({"optim.lr": 0.05})
    assert run_sweep(study, spec, overrides, runs, trials=1)["done"] == 1
    study.enqueue_trial({"optim.lr": 0.00001})

    (isolated_dirs / "presets" / "experiment").mkdir(parents=True)  # a user's own presets folder where they work:
    # the worker processes must import this project's `presets` package, not that folder
    resumed = subprocess.run(["imgcls-console", "sweep", "resume", "tpe-halving", "--trials", "4", "--workers", "2",
                              "--json"], capture_output=True, text=True, env={**os.environ, "IMGCLS_RUNS_DIR": str(runs)},
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["done"] == 4 and summary["sampler"] == "tpe" and summary["pruner"] == "halving"
    states = {row["trial"]: row["state"] for row in summary["ranked"]}
    assert states[0] == "complete" and states[1] == "pruned", states
    for row in summary["ranked"]:  # every trial its own run folder, tagged with its sweep and trial
        run_dir = Path(row["run_dir"])
        assert run_dir.name.startswith(f"tpe-halving-t{row['trial']}-")
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == ("interrupted" if row["state"] == "pruned" else "finished"), status
    pruned_run = Path(next(row["run_dir"] for row in summary["ranked"] if row["trial"] == 1))
    pruned = json.loads((pruned_run / "status.json").read_text())
    assert "pruned" in pruned["reason"] and pruned["epoch"] < 3  # stopped early, saved, resumable by hand
    study, _, _ = open_named(runs, "tpe-halving", None)
    assert isinstance(study.sampler, optuna.samplers.TPESampler)
    assert os.getpid() not in {t.user_attrs.get("pid") for t in study.trials[1:]}  # run by the worker processes


def test_ctrl_c_in_a_one_process_sweep_stops_it_in_one_line_and_its_trial_runs_again(isolated_dirs: Path) -> None:
    """SIGINT to `sweep run` while a trial trains: the trial's run is saved, the sweep says how to continue in one
    line (no traceback, exit 130), and `sweep resume` runs the stopped trial's values first."""
    runs = isolated_dirs / "runs"
    spec = write(isolated_dirs / "tpe4.yaml", """\
base: quickstart
params:
  optim.lr: {low: 0.001, high: 0.1, log: true}
sampler: tpe
pruner: none
trials: 3
""")
    env = {**os.environ, "IMGCLS_RUNS_DIR": str(runs)}
    sweep = subprocess.Popen(["imgcls-console", "sweep", "run", str(spec), "--set", "train.epochs=3", "data.limit=300"],
                             stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert sweep.stderr is not None
    for line in sweep.stderr:
        if line.startswith("trial 1: run "):  # the second trial has started training
            sweep.send_signal(signal.SIGINT)
            break
    rest = sweep.stderr.read()
    assert sweep.wait(timeout=300) == 130, rest
    assert "Traceback" not in rest and "Error" not in rest, rest
    lines = rest.strip().splitlines()
    assert lines[-1] == "sweep stopped; `imgcls-console sweep resume tpe4` continues it", lines
    assert any(line.startswith("trial 1 stopped (") for line in lines), lines
    resumed = cli("sweep", "resume", "tpe4", "--json", runs=runs)
    assert resumed.returncode == 0, resumed.stderr
    study, _, _ = open_named(runs, "tpe4", None)
    stopped = study.trials[1]
    assert stopped.state.name == "FAIL" and stopped.user_attrs["interrupted"]
    (again,) = [t for t in study.trials if t.user_attrs.get("rerun_of") == 1]
    assert again.params == stopped.params and again.state.name == "COMPLETE"
    assert len(counted("tpe4", runs)) == 3
