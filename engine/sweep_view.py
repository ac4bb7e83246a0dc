"""A read-only, torch-free view of the sweeps of a runs folder, for screens that refresh it every few seconds.

`engine.sweep.open_named` re-validates a sweep's spec against its base experiment (which imports the model
registry, hence torch, and fails when a preset has since changed); a viewer needs none of that. `SweepReader`
opens each default SQLite study once, keeps it, and reads the trials again on every `read` (cheap: one query),
so a sweep that other processes are running shows its new trials. Ranking is `engine.sweep.trial_rows`, the
same as `sweep show`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import RunError
from engine.sweep import SweepSpec, done_trials, known_sweeps, storage_url, sweep_dir, trial_rows

STOPPED = "stopped"  # a trial a person stopped (or a killed worker left): failed in the study, not counted


@dataclass
class SweepView:
    """One sweep as a viewer shows it: its settings, budget, counts and ranked trials (`trial_rows` rows)."""

    name: str
    base: str
    metric: str
    direction: str
    sampler: str
    pruner: str
    planned: int | None
    done: int
    running: int
    ranked: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best(self) -> dict[str, Any] | None:
        """The best complete trial's row, if any."""
        return next((row for row in self.ranked if row["best"]), None)

    def top_complete(self, count: int) -> list[dict[str, Any]]:
        """The `count` best complete trials that have a run folder, best first."""
        rows = [row for row in self.ranked if row["state"] == "complete" and row["run_dir"]]
        return rows[:max(0, count)]

    def points(self, state: str) -> list[tuple[int, float]]:
        """(trial number, shown metric) of the trials in `state` that have one, by trial number."""
        return sorted((row["trial"], float(row[self.metric])) for row in self.ranked
                      if row["state"] == state and row[self.metric] is not None)

    def best_so_far(self) -> list[tuple[int, float]]:
        """The running best of the complete trials, by trial number."""
        return running_best(self.points("complete"), self.direction)


def running_best(points: list[tuple[int, float]], direction: str) -> list[tuple[int, float]]:
    """For each (x, value) in order, the best value up to it (max when `direction` is maximize, else min)."""
    better = max if direction == "maximize" else min
    result: list[tuple[int, float]] = []
    for x, value in points:
        result.append((x, value if not result else better(result[-1][1], value)))
    return result


def compact_params(params: dict[str, Any]) -> str:
    """`optim.lr=0.05 train.batch_size=32` as `lr=0.05 batch_size=32` (the last part of each dotted key, unless
    two keys would then read the same)."""
    short = {key: key.rsplit(".", 1)[-1] for key in params}
    if len(set(short.values())) < len(short):
        short = {key: key for key in params}
    return " ".join(f"{short[key]}={_plain(value)}" for key, value in params.items())


def _plain(value: Any) -> str:
    """A parameter value, short: floats with 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class SweepReader:
    """Reads the sweeps of a runs folder (their default SQLite studies), keeping each study open between reads.

    Not thread-safe: use one reader from one thread at a time (a screen's poll worker)."""

    def __init__(self, runs_root: Path, busy_timeout_s: float = 2.0) -> None:
        self.runs_root = Path(runs_root)
        self.busy_timeout_s = busy_timeout_s  # how long a read waits for a writer's lock before it says so
        self._studies: dict[str, Any] = {}

    def names(self) -> list[str]:
        """The sweeps with a study file in the runs folder, by name."""
        names = known_sweeps(self.runs_root)
        for gone in set(self._studies) - set(names):
            self._studies.pop(gone)
        return names

    def read(self, name: str) -> SweepView:
        """The sweep `name` as it is now; a missing, locked or unreadable study is one RunError line."""
        path = sweep_dir(self.runs_root) / f"{name}.db"
        if not path.is_file():  # never let the storage create an empty study file in its place
            self._studies.pop(name, None)
            raise RunError(f"sweep {name}: its study {path} is gone")
        try:
            study = self._studies.get(name) or self._open(name)
            view = _view(name, study)
        except RunError:
            raise
        except Exception as exc:  # noqa: BLE001 - sqlite/sqlalchemy (locked, not a database): one line
            self._studies.pop(name, None)
            raise RunError(f"sweep {name}: cannot read {path}: {_first_line(exc)}") from None
        self._studies[name] = study
        return view

    def _open(self, name: str) -> Any:
        """The study of `name` in its default SQLite file."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.RDBStorage(storage_url(self.runs_root, name, None),  # the file exists
                                             engine_kwargs={"connect_args": {"timeout": self.busy_timeout_s}})
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            raise RunError(f"sweep {name}: {sweep_dir(self.runs_root) / f'{name}.db'} holds no study of that "
                           "name") from None


def _view(name: str, study: Any) -> SweepView:
    """A SweepView of a loaded study, from the spec mapping it keeps (not validated: a viewer only reads)."""
    raw = dict(study.user_attrs.get("spec") or {})
    metric = str(raw.get("metric", "val_acc"))
    direction = study.direction.name.lower()
    planned = study.user_attrs.get("trials", raw.get("trials"))
    spec = SweepSpec(name=name, source=str(study.user_attrs.get("source", name)), base=str(raw.get("base", "?")),
                     params=(), metric=metric, direction=direction, trials=planned if isinstance(planned, int) else 0,
                     sampler=str(raw.get("sampler", "tpe")), pruner=str(raw.get("pruner", "median")), seed=None,
                     raw=raw)
    trials = study.get_trials(deepcopy=False)
    stopped = {t.number for t in trials if t.user_attrs.get("interrupted")}
    ranked = trial_rows(study, spec)
    for row in ranked:
        if row["trial"] in stopped and row["state"] == "fail":
            row["state"] = STOPPED
    running = sum(1 for t in trials if t.state.name == "RUNNING")
    return SweepView(name, spec.base, metric, direction, spec.sampler, spec.pruner,
                     planned if isinstance(planned, int) else None, done_trials(study), running, ranked)


def _first_line(exc: BaseException) -> str:
    """An exception's root cause on one short line: the driver's own words ("database is locked"), not Optuna's
    wrapper or SQLAlchemy's SQL."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    exc = getattr(exc, "orig", None) or exc
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return " ".join(text.split())[:200]
