"""Running a sweep's trials: each one claimed under the sweep's lock (workers sharing a study never run more than
its budget), trained into an ordinary run folder, and told to the study as complete, pruned or failed.

Trials are asked and told one at a time (not `study.optimize`), so the claim, the time budget and a person's
stop are checked between trials, in this process and in every other worker of the same study.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.stop import StopRequest
from engine.sweep import Param, SweepSpec, _yaml_value, check_trials, done_trials, make_sampler, summary, sweep_dir


class TrialFailed(Exception):
    """A trial's run ended without a metric (diverged, failed): recorded as a failed trial, the sweep goes on."""


class _SweepInterrupted(Exception):
    """The person stopped the sweep (Ctrl-C, stop file): the current trial's run is saved, the sweep ends."""


@dataclass
class TrialStop(StopRequest):
    """A run's stop request that the sweep's pruner can set too (and that follows the whole sweep's)."""

    outer: StopRequest | None = None
    pruned: bool = False

    @property
    def requested(self) -> bool:
        if self.pruned or (self.outer is not None and self.outer.requested):
            return True
        return bool(StopRequest.requested.fget(self))  # type: ignore[attr-defined]

    def describe(self) -> str:
        """Why the run stopped: pruned by the sweep, else what stopped it."""
        if self.pruned:
            return "pruned by its sweep: its validation metric was poor next to the other trials'"
        return self.outer.describe() if self.outer is not None and self.outer.requested else super().describe()


class TrialListener:
    """Event listener of one trial's run: tags the run folder, reports each epoch's metric, asks to prune."""

    def __init__(self, trial: Any, spec: SweepSpec, stop: TrialStop) -> None:
        self.trial, self.spec, self.stop = trial, spec, stop
        self.values: list[float] = []

    def __call__(self, event: dict[str, Any]) -> None:
        from engine.annotations import add_tags

        if event.get("type") == "run_start":
            add_tags(Path(event["run"]), [f"sweep-{self.spec.name}", f"trial-{self.trial.number}"])
            self.trial.set_user_attr("run_dir", str(event["run"]))
        elif event.get("type") == "epoch":
            value = event.get(self.spec.metric)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return
            self.values.append(float(value))
            self.trial.report(float(value), int(event["epoch"]))
            if self.trial.should_prune():
                self.stop.pruned = True

    def best(self) -> float:
        """The run's best metric over its epochs (the trial's value)."""
        return max(self.values) if self.spec.direction == "maximize" else min(self.values)


def _suggest(trial: Any, param: Param) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(param.key, list(param.choices))
    if param.integer:
        return trial.suggest_int(param.key, int(param.low), int(param.high), log=param.log)  # type: ignore[arg-type]
    return trial.suggest_float(param.key, float(param.low), float(param.high), log=param.log)  # type: ignore[arg-type]


def trial_overrides(trial: Any, spec: SweepSpec) -> list[str]:
    """The trial's sampled values as `--set KEY=VALUE` overrides."""
    return [f"{p.key}={_yaml_value(_suggest(trial, p))}" for p in spec.params]


def _objective(spec: SweepSpec, overrides: list[str], runs_root: Path, outer: StopRequest | None,
               listeners: Callable[[Any], list[Any]]) -> Callable[[Any], float]:
    """The Optuna objective: one run folder trained with the trial's values; its best metric is the value."""
    import optuna

    from engine.config import renamed
    from engine.presets import resolve_experiment
    from engine.runner import start_run

    def objective(trial: Any) -> float:
        """Train the trial's run; its best metric, or TrialPruned / TrialFailed / _SweepInterrupted."""
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        config = resolve_experiment(spec.base, [*overrides, *trial_overrides(trial, spec)])
        config = renamed(config, f"{spec.name}-t{trial.number}")
        stop = TrialStop(outer=outer)
        watcher = TrialListener(trial, spec, stop)
        status = start_run(config, runs_root, listeners=[watcher, *listeners(trial)], stop=stop)
        trial.set_user_attr("run_state", status.get("state"))
        if stop.pruned:
            raise optuna.TrialPruned(f"pruned at epoch {len(watcher.values)}")
        finished = status.get("state") == "finished" and bool(watcher.values)
        if outer is not None and outer.requested and not finished:  # a run that trained all its epochs counts
            trial.set_user_attr("interrupted", True)
            raise _SweepInterrupted()
        if not finished:
            raise TrialFailed(f"run {status.get('state')}: {status.get('reason')}")
        return watcher.best()

    return objective


def _gone(pid: int) -> bool:
    """Whether a process has ended (a zombie not yet reaped by its parent has too)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def release_stale(study: Any) -> list[int]:
    """Trials left running by a process of this machine that is gone (killed): recorded as failed and not
    counted, their values queued to run again. Returns their numbers."""
    from optuna.trial import TrialState

    host, released = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") == host and isinstance(pid, int) and _gone(pid):
            mark_interrupted(study, trial)
            released.append(trial.number)
    return released


def target_trials(study: Any, spec: SweepSpec, trials: int | None) -> int:
    """The study's trial budget: `--trials`, else what it was given before, else the spec's; kept in the study."""
    target = check_trials(spec, trials or study.user_attrs.get("trials") or spec.trials)
    study.set_user_attr("trials", target)
    return target


@contextmanager
def sweep_lock(runs_root: Path, name: str) -> Iterator[None]:
    """An OS lock (flock on `<runs>/sweeps/<name>.lock`) held while a worker claims its next trial."""
    folder = sweep_dir(runs_root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory lock key of the sweep `name` (a signed 64-bit number from its name)."""
    return int.from_bytes(hashlib.sha256(f"imgcls-console sweep {name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def database_lock(study: Any, name: str) -> Iterator[None]:
    """A lock in the study's database while a worker claims its next trial, for workers on machines that share
    the database but not the runs folder (so not the file lock): a PostgreSQL advisory lock keyed by the sweep's
    name. Other storages take nothing here: SQLite is used from one runs folder, whose file lock covers it; MySQL
    and journal files shared without the runs folder are not covered yet (README says so)."""
    storage = getattr(study._storage, "_backend", study._storage)  # optuna wraps an RDBStorage in a cache
    engine = getattr(storage, "engine", None)
    if engine is None or engine.dialect.name != "postgresql":
        yield
        return
    from sqlalchemy import text

    key = advisory_key(name)
    with engine.connect() as connection:  # a session-level lock lives as long as this connection holds it
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()


def claim_trial(study: Any, spec: SweepSpec, target: int, runs_root: Path) -> Any | None:
    """A new trial when the budget has room for it (counted trials plus those running in other workers), else
    None; checked and created under the sweep's locks (a file lock in the runs folder, and an advisory lock in a
    PostgreSQL study's database), so parallel workers never overshoot."""
    from optuna.trial import TrialState

    with sweep_lock(runs_root, spec.name), database_lock(study, spec.name):
        release_stale(study)
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if done_trials(study) + running >= target:
            return None
        if spec.seed is not None:  # seeded by the trial's number: workers never draw the same values, and a
            study.sampler = make_sampler(spec, spec.seed + len(study.trials))  # sweep samples the same each time
        return study.ask()


def mark_interrupted(study: Any, trial: Any) -> None:
    """A trial stopped by a person or a killed process: failed and not counted, its values queued to run first
    on resume (so a grid point is never lost)."""
    from optuna.trial import TrialState

    if trial.state == TrialState.RUNNING:  # a finished trial cannot be updated (the caller marked it first)
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    if trial.params:
        study.enqueue_trial(dict(trial.params), user_attrs={"rerun_of": trial.number}, skip_if_exists=False)


def run_trial(study: Any, trial: Any, objective: Callable[[Any], float]) -> bool:
    """Run one claimed trial and tell the study how it ended; False when a person stopped the sweep."""
    import optuna
    from optuna.trial import TrialState

    try:
        value = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    except TrialFailed as exc:
        trial.set_user_attr("fail_reason", str(exc))
        study.tell(trial, state=TrialState.FAIL)
    except (_SweepInterrupted, KeyboardInterrupt) as exc:  # stopped by a person: not counted, run again on resume
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)  # while it can still be updated
        study.tell(trial, state=TrialState.FAIL)
        mark_interrupted(study, study._storage.get_trial(trial._trial_id))
        if isinstance(exc, KeyboardInterrupt):
            raise
        return False
    except BaseException as exc:  # an error that would repeat in every trial (config, disk): recorded, then raised
        trial.set_user_attr("fail_reason", " ".join(str(exc).split())[:500])
        study.tell(trial, state=TrialState.FAIL)
        raise
    else:
        study.tell(trial, value)
    return True


def run_sweep(study: Any, spec: SweepSpec, overrides: list[str], runs_root: Path, *, trials: int | None = None,
              time_limit: float | None = None, stop: StopRequest | None = None,
              listeners: Callable[[Any], list[Any]] | None = None,
              on_trial: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Claim and run trials until the study has its budget, the time budget (`time_limit`, else the spec's) is
    spent, or `stop` is requested; returns `engine.sweep.summary`. A trial that started runs to its end."""
    target = target_trials(study, spec, trials)
    limit = time_limit if time_limit is not None else spec.time_limit
    deadline = None if limit is None else time.monotonic() + limit
    objective = _objective(spec, overrides, runs_root, stop, listeners or (lambda trial: []))
    while not (stop is not None and stop.requested):
        if deadline is not None and time.monotonic() >= deadline:
            break
        trial = claim_trial(study, spec, target, runs_root)
        if trial is None:
            break
        go_on = run_trial(study, trial, objective)
        if on_trial is not None:
            on_trial(study.get_trials(deepcopy=False)[trial.number])
        if not go_on:
            break
    return summary(study, spec)
