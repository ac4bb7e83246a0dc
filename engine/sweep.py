"""Sweeps: a search over an experiment's settings, run by Optuna, each trial an ordinary run folder.

A sweep spec is a YAML preset of kind `sweep` (`presets/sweep/`, or the user folder's `sweep/`): the base
experiment, the parameters (dotted keys with `choices`, or `low`/`high` with `log` and `int`), the metric and
direction, the budget (trials, time), the sampler and the pruner. The study lives in SQLite in the runs folder
(`<runs>/sweeps/<name>.db`, study name = sweep name) or any storage URL Optuna accepts; it keeps the spec, so
`resume` needs only the name. Each trial trains through `engine.runner.start_run` into a run folder named
`<sweep>-t<N>-<date>-<time>`, tagged `sweep-<sweep>` and `trial-<N>`; a pruned trial stops gracefully
(its run `interrupted`, resumable by hand) and is recorded as pruned. Running trials: engine.sweep_trials;
several workers: engine.sweep_workers.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, RunError, did_you_mean, unknown_name

SPEC_KEYS = ("description", "base", "params", "metric", "direction", "trials", "time", "sampler", "pruner", "seed")
PARAM_KEYS = ("choices", "low", "high", "log", "int")
METRICS = ("val_acc", "val_loss", "train_acc", "train_loss")
SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("median", "halving", "hyperband", "none")  # median; successive halving; Hyperband (halving brackets)
FINISHED = ("COMPLETE", "PRUNED", "FAIL")
DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
DEFAULT_TRIALS = 10
MAX_NAME = 30  # a sweep name is part of tags (40 characters at most) and run folder names


@dataclass(frozen=True)
class Param:
    """One searched setting: a dotted config key with a list of choices or a numeric range."""

    key: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec (`raw` is the file's mapping, kept in the study for `resume`)."""

    name: str
    source: str
    base: str
    params: tuple[Param, ...]
    metric: str
    direction: str
    trials: int
    sampler: str
    pruner: str
    seed: int | None
    raw: dict[str, Any] = field(default_factory=dict)
    time_limit: float | None = None  # seconds: no trial starts after it (per `run`/`resume`); None = no limit


def sweep_dir(runs_root: Path) -> Path:
    """Where the default SQLite studies live."""
    return Path(runs_root) / "sweeps"


def find_spec(name: str) -> Path:
    """A sweep spec file: a path, else `sweep/<name>.yaml` in the user presets folder, else the built-in one."""
    from engine.presets import builtin_dir, user_dir

    if name.endswith((".yaml", ".yml")) or "/" in name or os.sep in name:
        path = Path(name).expanduser()
        if path.is_file():
            return path
        raise ConfigError(f"sweep spec {name} does not exist")
    for root in (user_dir(), builtin_dir()):
        if (root / "sweep" / f"{name}.yaml").is_file():
            return root / "sweep" / f"{name}.yaml"
    names = sorted({p.stem for root in (user_dir(), builtin_dir()) for p in (root / "sweep").glob("*.yaml")})
    raise ConfigError(unknown_name("sweep preset", name, names, "imgcls-console presets list sweep"))


def load_spec(name: str, overrides: list[str] | None = None) -> SweepSpec:
    """Load and validate a sweep spec file (`--set` overrides apply to the base experiment of every trial)."""
    from engine.presets import load_mapping

    path = find_spec(name)
    return spec_from_raw(load_mapping(path), str(path), path.stem, overrides or [])


def spec_from_raw(raw: dict[str, Any], source: str, name: str, overrides: list[str], *,
                  against_base: bool = True) -> SweepSpec:
    """Validate a spec mapping; the first problem is one ConfigError naming `source` and the dotted key.
    `against_base=False` (reading a stored sweep's trials) skips what needs its base experiment as it is now."""
    from engine.presets import PLAIN_NAME, find_preset

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {message}")

    if not PLAIN_NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise ConfigError(f"{source}: sweep name {name!r} (the file name) must be a plain word of at most "
                          f"{MAX_NAME} characters (letters, digits, '.', '_', '-')")
    for key in raw:
        if key not in SPEC_KEYS:
            raise fail(str(key), f"unknown key{did_you_mean(str(key), SPEC_KEYS)}; a sweep has {', '.join(SPEC_KEYS)}")
    base = raw.get("base")
    if not isinstance(base, str):
        raise fail("base", f"expected an experiment preset name, got {base!r}")
    try:
        if against_base:
            find_preset("experiment", base)
    except ConfigError as exc:
        raise fail("base", str(exc)) from None
    params = _params(raw.get("params"), fail)
    metric = _choice(raw.get("metric", "val_acc"), METRICS, "metric", fail)
    direction = _choice(raw.get("direction", "minimize" if metric.endswith("loss") else "maximize"),
                        ("maximize", "minimize"), "direction", fail)
    sampler = _choice(raw.get("sampler", "tpe"), SAMPLERS, "sampler", fail)
    pruner = _choice(raw.get("pruner", "median"), PRUNERS, "pruner", fail)
    trials = _trials(raw.get("trials"), sampler, params, fail)
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise fail("seed", f"expected an integer, got {seed!r}")
    time_limit = None
    if raw.get("time") is not None:
        time_limit = parse_duration(raw["time"])
        if time_limit is None:
            raise fail("time", f"expected a positive time such as 600 (seconds), 90s, 45m, 2h or 1h30m, got "
                               f"{raw['time']!r}")
    spec = SweepSpec(name, source, base, params, metric, direction, trials, sampler, pruner, seed, dict(raw),
                     time_limit)
    if against_base:
        _check_against_base(spec, overrides, fail)
    return spec


def parse_duration(value: Any) -> float | None:
    """Seconds from a number of seconds or a text like `90s`, `45m`, `2h`, `1h30m`; None when it is neither or
    not positive."""
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        match = DURATION.fullmatch(value.strip().replace(" ", ""))
        if match and any(match.groups()):
            hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
            seconds = hours * 3600 + minutes * 60 + secs
    return seconds if seconds is not None and math.isfinite(seconds) and seconds > 0 else None


def _choice(value: Any, allowed: tuple[str, ...], key: str, fail: Callable[[str, str], ConfigError]) -> str:
    if value not in allowed:
        raise fail(key, f"{value!r} is not one of {', '.join(allowed)}{did_you_mean(str(value), allowed)}")
    return value


def _params(raw: Any, fail: Callable[[str, str], ConfigError]) -> tuple[Param, ...]:
    """The `params` mapping: each dotted key with `choices: [...]` or `low`/`high` (`log`, `int`)."""
    if not isinstance(raw, dict) or not raw:
        raise fail("params", "expected a mapping of dotted keys to {choices: [...]} or {low: L, high: H}")
    return tuple(_param(str(key), value, fail) for key, value in raw.items())


def _param(key: str, value: Any, fail: Callable[[str, str], ConfigError]) -> Param:
    """One parameter's search space, checked."""
    where = f"params.{key}"
    if isinstance(value, list):  # `schedule: [cosine, plateau]` is short for choices
        value = {"choices": value}
    if not isinstance(value, dict):
        raise fail(where, f"expected {{choices: [...]}} or {{low: L, high: H}}, got {value!r}")
    for sub in value:
        if sub not in PARAM_KEYS:
            raise fail(f"{where}.{sub}", f"unknown key{did_you_mean(str(sub), PARAM_KEYS)}; a parameter has "
                                         f"{', '.join(PARAM_KEYS)}")
    if "choices" in value:
        choices = value["choices"]
        if not isinstance(choices, list) or not choices:
            raise fail(f"{where}.choices", "expected a non-empty list of values")
        if set(value) - {"choices"}:
            raise fail(where, "give either choices or low/high, not both")
        odd = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if odd:
            raise fail(f"{where}.choices", f"{odd[0]!r}: a choice is one plain value (number, word, true/false)")
        return Param(key, choices=tuple(choices))
    flags = {flag: value.get(flag, False) for flag in ("log", "int")}
    for flag, set_to in flags.items():
        if not isinstance(set_to, bool):
            raise fail(f"{where}.{flag}", f"expected true or false, got {set_to!r}")
    low, high = value.get("low"), value.get("high")
    for bound, number in (("low", low), ("high", high)):
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number):
            raise fail(f"{where}.{bound}", f"expected a number, got {number!r}")
        if flags["int"] and number != int(number):
            raise fail(f"{where}.{bound}", f"expected a whole number (int: true), got {number!r}")
    if low > high:
        raise fail(f"{where}.low", f"{low} is greater than high {high}")
    if flags["log"] and low <= 0:
        raise fail(f"{where}.low", f"must be positive with log: true, got {low}")
    return Param(key, low=low, high=high, log=flags["log"], integer=flags["int"])


def _trials(value: Any, sampler: str, params: tuple[Param, ...], fail: Callable[[str, str], ConfigError]) -> int:
    """The trial budget: given, else the grid's size (grid) or DEFAULT_TRIALS; a grid sweep searches choices."""
    grid_size = None
    if sampler == "grid":
        ranged = [p.key for p in params if p.choices is None]
        if ranged:
            raise fail(f"params.{ranged[0]}", "the grid sampler needs choices (use random or tpe for a range)")
        grid_size = math.prod(len(p.choices or ()) for p in params)
    if value is None:
        return grid_size or DEFAULT_TRIALS
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise fail("trials", f"expected a whole number of at least 1, got {value!r}")
    if grid_size is not None and value > grid_size:
        raise fail("trials", f"{value} is more than the {grid_size} points of the grid")
    return value


def _check_against_base(spec: SweepSpec, overrides: list[str], fail: Callable[[str, str], ConfigError]) -> None:
    """Every value a parameter can take must make a valid experiment: each choice, and both ends of a range."""
    from engine.presets import resolve_experiment

    resolve_experiment(spec.base, overrides)  # the user's own --set first: its error names the override
    for param in spec.params:
        values = param.choices if param.choices is not None else (_number(param, param.low),
                                                                 _number(param, param.high))
        for value in values:
            text = f"{param.key}={_yaml_value(value)}"
            try:
                resolve_experiment(spec.base, [*overrides, text])
            except ConfigError as exc:
                message = re.sub(r"^(?:--set \S+ ?)+: ", "", str(exc).splitlines()[0])  # not the whole --set list
                message = message.removeprefix(f"{param.key}: ")
                if "unknown key" in message:  # the key is wrong, whatever the value
                    raise fail(f"params.{param.key}", message) from None
                raise fail(f"params.{param.key}", f"{value!r}: {message}") from None


def _number(param: Param, value: float | None) -> float | int:
    return int(value) if param.integer else float(value)  # type: ignore[arg-type]


def _yaml_value(value: Any) -> str:
    """A value as `--set` reads it back (safe YAML, one line)."""
    import json

    return value if isinstance(value, str) else json.dumps(value)


def check_trials(spec: SweepSpec, trials: int) -> int:
    """`trials` when the sweep can run that many (a grid has as many points as its choices make)."""
    if spec.sampler == "grid":
        grid = math.prod(len(p.choices or ()) for p in spec.params)
        if trials > grid:
            raise ConfigError(f"--trials {trials}: more than the {grid} points of the grid of {spec.source}")
    return trials


# ---------------------------------------------------------------------------------------------- storage, study


def storage_url(runs_root: Path, name: str, url: str | None) -> str:
    """The study storage: `url` when given, else SQLite at `<runs>/sweeps/<name>.db` (its folder made)."""
    if url:
        return url
    from engine.runs import ensure_folder

    folder = ensure_folder(sweep_dir(runs_root), "sweeps folder", "pass another --runs-dir or --storage")
    return f"sqlite:///{(folder / f'{name}.db').resolve()}"


def open_storage(url: str) -> Any:
    """An Optuna storage for `url`; one that cannot be opened is a ConfigError naming it (before any trial). A
    database server that does not answer fails after 10 s instead of hanging (unless the URL sets its own
    connect_timeout)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if "://" not in url or url.startswith("journal"):
            backend = optuna.storages.journal.JournalFileBackend(url.removeprefix("journal:"))
            return optuna.storages.JournalStorage(backend)
        kwargs: dict[str, Any] = {}
        if url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "mysql") and "connect_timeout" not in url:
            kwargs = {"connect_args": {"connect_timeout": 10}}
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs or None)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy, drivers, OS: any failure means "cannot use it"
        raise ConfigError(f"--storage {_redacted(url)}: cannot open the study storage ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    """The storage error in one short line: SQLAlchemy's "(Background on this error at: ...)" dropped, and the
    package to install named when a database driver is missing."""
    text = " ".join(str(exc).split())
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    if isinstance(exc, ModuleNotFoundError) and exc.name in ("psycopg", "psycopg2"):
        return "the PostgreSQL driver is not installed: pip install 'psycopg[binary]' (or the project's postgres extra)"
    if isinstance(exc, ModuleNotFoundError) and exc.name in ("pymysql", "MySQLdb"):
        return f"the MySQL driver is not installed: pip install {'PyMySQL' if exc.name == 'pymysql' else 'mysqlclient'}"
    return text[:200]


def _redacted(url: str) -> str:
    """The URL with its password replaced, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


def make_sampler(spec: SweepSpec, seed: int | None = None) -> Any:
    """The spec's sampler, seeded with `seed` (default: the spec's seed)."""
    import optuna

    seed = spec.seed if seed is None else seed
    if spec.sampler == "grid":
        space = {p.key: list(p.choices or ()) for p in spec.params}
        return _budgeted_grid()(space, seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant liar: trials running in other workers count as poor, so parallel workers spread out
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _budgeted_grid() -> type:
    """Optuna's GridSampler without its `study.stop()` once the grid is covered: trials are asked and told one by
    one (engine.sweep_trials), and the sweep's own budget (never more than the grid) ends the sweep."""
    import optuna

    class BudgetedGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            """Nothing: the sweep's budget ends it, not a stop inside an optimize loop (there is none)."""

    return BudgetedGridSampler


def _pruner(spec: SweepSpec) -> Any:
    """Median: stop a trial whose metric is below the median of earlier trials at the same epoch. Successive
    halving / Hyperband: keep the best fraction of trials at epochs 1, 3, 9, ... (a rung per factor of 3)."""
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner()
    if spec.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto")
    return optuna.pruners.NopPruner()


def create_study(spec: SweepSpec, storage: Any, overrides: list[str]) -> Any:
    """A new study named after the sweep, keeping its spec; an existing one is refused (resume continues it)."""
    import optuna

    try:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                                    sampler=make_sampler(spec), pruner=_pruner(spec))
    except optuna.exceptions.DuplicatedStudyError:
        raise RunError(f"sweep {spec.name!r} exists already; `imgcls-console sweep resume {spec.name}` continues "
                       "it, or rename the spec file for a new sweep") from None
    study.set_user_attr("spec", spec.raw)
    study.set_user_attr("source", spec.source)
    study.set_user_attr("overrides", overrides)
    return study


def load_study(name: str, storage: Any, *, to_run: bool = True) -> tuple[Any, SweepSpec, list[str]]:
    """An existing sweep's study, its spec (re-validated: against its base experiment as it is now when trials
    are `to_run`; read-only uses need not find the base) and the `--set` overrides it was started with."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise RunError(f"no sweep named {name!r} in its storage") from None
    attrs = study.user_attrs
    overrides = list(attrs.get("overrides") or [])
    spec = spec_from_raw(dict(attrs.get("spec") or {}), str(attrs.get("source", name)), name, overrides,
                         against_base=to_run)
    study.sampler, study.pruner = make_sampler(spec), _pruner(spec)
    return study, spec, overrides


def known_sweeps(runs_root: Path) -> list[str]:
    """The names of the sweeps with a default SQLite study in the runs folder."""
    return sorted(p.stem for p in sweep_dir(runs_root).glob("*.db"))


def open_named(runs_root: Path, name: str, url: str | None, *,
               to_run: bool = True) -> tuple[Any, SweepSpec, list[str]]:
    """A sweep by name: its default SQLite file (which must exist) or the study `name` in `url` (`to_run`: see
    `load_study`)."""
    if url is None and not (sweep_dir(runs_root) / f"{name}.db").is_file():
        names = known_sweeps(runs_root)
        raise RunError(f"no sweep named {name!r} in {sweep_dir(runs_root)}{did_you_mean(name, names)}; sweeps: "
                       f"{', '.join(names) or '(none)'}")
    return load_study(name, open_storage(storage_url(runs_root, name, url)), to_run=to_run)


# ---------------------------------------------------------------------------------------------- results


def done_trials(study: Any) -> int:
    """Trials that count towards the budget: complete, pruned or failed (not those stopped by a person)."""
    return sum(1 for t in study.trials if t.state.name in FINISHED and not t.user_attrs.get("interrupted"))


def shown_value(trial: Any) -> float | None:
    """A complete trial's value; a pruned one's last reported metric; else None."""
    if trial.state.name == "COMPLETE":
        return trial.value
    if trial.intermediate_values:
        return trial.intermediate_values[max(trial.intermediate_values)]
    return None


def trial_params(trial: Any) -> dict[str, Any]:
    """A trial's values: those it ran with, or for one waiting to run (an interrupted trial queued again) those
    queued for it."""
    return dict(trial.params) or dict(trial.system_attrs.get("fixed_params", {}))


def trial_rows(study: Any, spec: SweepSpec) -> list[dict[str, Any]]:
    """Every trial ranked: complete ones by value (best first), then pruned ones by their last metric, then the
    rest by number; the best complete trial is marked."""
    sign = -1 if spec.direction == "maximize" else 1
    order = {"COMPLETE": 0, "PRUNED": 1}

    def key(trial: Any) -> tuple[int, float, int]:
        value = shown_value(trial)
        return order.get(trial.state.name, 2), sign * value if value is not None else math.inf, trial.number

    rows = []
    for rank, trial in enumerate(sorted(study.trials, key=key), start=1):
        rows.append({"rank": rank, "trial": trial.number, "state": trial.state.name.lower(),
                     spec.metric: shown_value(trial), "params": trial_params(trial),
                     "epochs": len(trial.intermediate_values), "run_dir": trial.user_attrs.get("run_dir"),
                     "best": False})
    if rows and rows[0]["state"] == "complete":
        rows[0]["best"] = True
    return rows


def summary(study: Any, spec: SweepSpec) -> dict[str, Any]:
    """A sweep's state: its spec's essentials, the budget, the done count and the ranked trials."""
    rows = trial_rows(study, spec)
    best = next((row for row in rows if row["best"]), None)
    return {"sweep": spec.name, "spec": spec.source, "base": spec.base, "metric": spec.metric,
            "direction": spec.direction, "sampler": spec.sampler, "pruner": spec.pruner,
            "trials": study.user_attrs.get("trials", spec.trials), "done": done_trials(study),
            "best_trial": best["trial"] if best else None, "best_value": best[spec.metric] if best else None,
            "time_limit": spec.time_limit, "importances": importances(study), "ranked": rows}


def importances(study: Any) -> dict[str, float]:
    """How much each parameter explains the metric across complete trials (Optuna's fANOVA, seeded, summing to
    1), best first; empty with fewer than 3 complete trials or when no parameter varied among them."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    varied = sorted({key for t in complete for key in t.params
                     if len({repr(other.params.get(key)) for other in complete}) > 1})
    if len(complete) < 3 or not varied:
        return {}
    try:
        found = optuna.importance.get_param_importances(study, params=varied,
                                                        evaluator=FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError):  # a search space Optuna cannot analyse (changed between resumes): none
        return {}
    return {key: round(float(value), 4) for key, value in found.items()}
