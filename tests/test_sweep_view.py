"""engine.sweep_view: a real Optuna study in real SQLite (trials asked and told by hand, no training), read the way
the console's Sweeps screen reads it."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from conftest import write
from engine.errors import RunError
from engine.sweep import create_study, load_spec, open_named, open_storage, storage_url, sweep_dir
from engine.sweep_view import STOPPED, SweepReader, compact_params, running_best

SPEC = """\
base: quickstart
params:
  optim.lr: {low: 0.01, high: 0.2, log: true}
sampler: random
pruner: none
"""


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study file of the sweep `view`, made once (SQLite commits are slow on a busy disk)."""
    tmp = tmp_path_factory.mktemp("sweep-view")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("IMGCLS_PRESETS_DIR", str(tmp / "user-presets"))
        make_study(tmp / "runs", tmp)
    return sweep_dir(tmp / "runs") / "view.db"


@pytest.fixture
def runs_root(isolated_dirs: Path, study_file: Path) -> Path:
    """This test's runs folder, holding a copy of the sweep `view`."""
    folder = sweep_dir(isolated_dirs / "runs")
    folder.mkdir(parents=True)
    shutil.copy(study_file, folder / "view.db")
    return isolated_dirs / "runs"


def make_study(runs_root: Path, tmp: Path) -> Any:
    """The sweep `view`: two complete trials, a pruned one, a running one and one a person stopped."""
    spec = load_spec(str(write(tmp / "view.yaml", SPEC)), [])
    study = create_study(spec, open_storage(storage_url(runs_root, spec.name, None)), [])
    study.set_user_attr("trials", 6)
    for lr, reports, end in ((0.05, [0.5, 0.6], 0.6), (0.1, [0.4], "pruned"), (0.02, [0.8], 0.8),
                             (0.15, [0.3], "running"), (0.03, [], "stopped")):
        study.enqueue_trial({"optim.lr": lr})  # the value the trial then suggests
        trial = study.ask()
        assert trial.suggest_float("optim.lr", 0.01, 0.2, log=True) == lr
        for epoch, value in enumerate(reports, start=1):
            trial.report(value, epoch)
        trial.set_user_attr("run_dir", str(runs_root / f"view-t{trial.number}-20260101-000000"))
        if end == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        elif end == "stopped":
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
        elif end != "running":
            study.tell(trial, end)
    return study


def test_reader_ranks_counts_and_charts_a_study(runs_root: Path) -> None:
    view = SweepReader(runs_root).read("view")
    assert (view.base, view.metric, view.direction, view.sampler, view.pruner) == \
        ("quickstart", "val_acc", "maximize", "random", "none")
    assert (view.planned, view.done, view.running) == (6, 3, 1)  # complete + pruned (+ failed), not stopped
    assert [(r["trial"], r["state"]) for r in view.ranked] == \
        [(2, "complete"), (0, "complete"), (1, "pruned"), (3, "running"), (4, STOPPED)]
    assert view.best is not None and view.best["trial"] == 2
    assert [r["val_acc"] for r in view.ranked[:4]] == [0.8, 0.6, 0.4, 0.3]  # running: its last epoch so far
    assert view.points("complete") == [(0, 0.6), (2, 0.8)]
    assert view.points("pruned") == [(1, 0.4)]
    assert view.best_so_far() == [(0, 0.6), (2, 0.8)]
    assert [r["trial"] for r in view.top_complete(3)] == [2, 0]
    assert [r["trial"] for r in view.top_complete(1)] == [2]


def test_a_reader_sees_what_other_handles_write_between_reads(runs_root: Path) -> None:
    """Another process's writes (here: another storage handle on the same file) show on the next read: a new
    trial, and the running one finishing."""
    reader = SweepReader(runs_root)
    assert len(reader.read("view").ranked) == 5
    other, _, _ = open_named(runs_root, "view", None)
    running = next(t for t in other.trials if t.state == TrialState.RUNNING)
    other.tell(running.number, 0.9)
    added = other.ask()
    added.suggest_float("optim.lr", 0.01, 0.2, log=True)
    view = reader.read("view")
    assert len(view.ranked) == 6
    assert (view.ranked[0]["trial"], view.ranked[0]["state"], view.best_so_far()[-1]) == (3, "complete", (3, 0.9))
    assert (view.done, view.running) == (4, 1)


def test_missing_broken_and_locked_studies_are_one_line_errors(runs_root: Path) -> None:
    reader = SweepReader(runs_root, busy_timeout_s=0.1)
    assert reader.names() == ["view"]
    with pytest.raises(RunError, match=r"^sweep gone: its study .*gone\.db is gone$"):
        reader.read("gone")
    assert not (sweep_dir(runs_root) / "gone.db").exists()  # never created by reading
    write(sweep_dir(runs_root) / "broken.db", "not a database " * 100)
    with pytest.raises(RunError, match=r"^sweep broken: cannot read .*broken\.db: file is not a database$"):
        reader.read("broken")
    assert reader.read("view").done == 3
    lock = sqlite3.connect(sweep_dir(runs_root) / "view.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # a writer holding the file
    try:
        with pytest.raises(RunError, match=r"^sweep view: cannot read .*view\.db: database is locked$"):
            reader.read("view")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert reader.read("view").done == 3  # read again once the writer is done


def test_reading_a_sweep_imports_no_torch(runs_root: Path) -> None:
    code = ("import sys; from pathlib import Path; from engine.sweep_view import SweepReader; "
            f"view = SweepReader(Path({str(runs_root)!r})).read('view'); "
            "assert len(view.ranked) == 5, view; assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_running_best_and_compact_params() -> None:
    points = [(0, 0.5), (1, 0.4), (3, 0.7), (4, 0.6)]
    assert running_best(points, "maximize") == [(0, 0.5), (1, 0.5), (3, 0.7), (4, 0.7)]
    assert running_best(points, "minimize") == [(0, 0.5), (1, 0.4), (3, 0.4), (4, 0.4)]
    assert running_best([], "maximize") == []
    assert compact_params({"optim.lr": 0.012345678, "train.batch_size": 32, "schedule": "cosine"}) == \
        "lr=0.01235 batch_size=32 schedule=cosine"
    assert compact_params({"optim.lr": 0.1, "finetune.lr": 0.01}) == "optim.lr=0.1 finetune.lr=0.01"
