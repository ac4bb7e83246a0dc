"""k-fold cross-validation: K fold runs grouped in one folder, a per-fold table, the fold ensemble on test.

The group folder `<runs>/<experiment>-kfold-<YYYYmmdd-HHMMSS>/` holds the K run folders and `kfold.json`
(members, per-fold metrics, cross-validation mean/std and the ensemble's test result). All folds share the
same held-out test set: engine.data splits only train+val into folds.
"""

from __future__ import annotations

import copy
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from engine.config import ExperimentConfig, check_semantics
from engine.errors import ConfigError, DataError, EngineError, RunError
from engine.runs import (atomic_write_text, is_run_dir, new_folder, read_config, read_status, safe_name,
                         saved_checkpoints)

RECORD = "kfold.json"
FOLD_KEYS = ("state", "reason", "best_epoch", "best_val_acc", "best_metric", "best_value", "test_acc",
             "test_loss", "wall_s", "params")


def create_group(runs_root: Path, experiment: str) -> Path:
    """A new, empty group folder `<experiment>-kfold-<stamp>[-n]` in the runs folder."""
    return new_folder(runs_root, f"{safe_name(experiment)}-kfold-{time.strftime('%Y%m%d-%H%M%S')}", "k-fold groups")


def fold_config(config: ExperimentConfig, folds: int, fold: int) -> ExperimentConfig:
    """The experiment with validation on fold `fold` of `folds`, named `<experiment>-fold<i>`."""
    result = copy.deepcopy(config)
    result.data.folds = folds
    result.data.fold = fold
    result.name = f"{config.name}-fold{fold}"
    result.experiment = config.experiment or config.name  # what it was composed from, as a renamed run keeps
    check_semantics(result, "kfold")
    return result


def write_record(group: Path, record: dict[str, Any]) -> None:
    """Replace the group's kfold.json atomically."""
    atomic_write_text(group / RECORD, json.dumps(record, indent=2, default=str) + "\n")


def read_record(group: Path) -> dict[str, Any]:
    """A group's kfold.json."""
    try:
        return json.loads((group / RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{group} is not a k-fold group (no {RECORD})") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{group / RECORD}: not valid JSON ({exc})") from exc


def cross_validation(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of the finished folds' best val accuracy and test accuracy (a fold stopped
    part-way is no estimate of the experiment), and how many folds they are over; no std from one fold."""
    finished = [f for f in per_fold if f.get("state") == "finished"]
    summary: dict[str, Any] = {"folds_finished": len(finished)}
    for key in ("best_val_acc", "test_acc"):
        values = [float(f[key]) for f in finished if isinstance(f.get(key), (int, float))]
        summary[f"{key}_mean"] = statistics.fmean(values) if values else None
        summary[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
    return summary


def run_kfold(config: ExperimentConfig, folds: int, runs_root: Path, *, listeners: list[Any] | None = None,
              stop: Any = None, tta: str | None = None, combine: str | None = None) -> dict[str, Any]:
    """Train K fold runs of `config` in a new group folder, then evaluate their ensemble on the test split."""
    if folds < 2:
        raise ConfigError(f"--folds {folds}: k-fold needs at least 2 folds")
    _check_tta(tta)
    group = create_group(runs_root, config.name)
    record: dict[str, Any] = {"kind": "kfold", "name": config.name, "experiment": config.experiment or config.name,
                              "folds": folds, "group_dir": str(group), "state": "running", "created": time.time(),
                              "tta": tta, "combine": combine, "members": [], "per_fold": [], "cv": {},
                              "ensemble": None}
    write_record(group, record)
    return _train_folds(group, record, config, listeners, stop)


def resume_kfold(group: Path, *, listeners: list[Any] | None = None, stop: Any = None, tta: str | None = None,
                 combine: str | None = None) -> dict[str, Any]:
    """Finish an interrupted or failed k-fold group: its finished folds are kept, an unfinished fold resumes from
    its last checkpoint (one with none trains again), the folds never started train; then the fold ensemble.
    `tta`/`combine` default to what the group was started with."""
    record = read_record(group)
    folds = record.get("folds")
    if not isinstance(folds, int) or folds < 2:
        raise RunError(f"{group / RECORD}: folds: expected a whole number of at least 2, got {folds!r}")
    runs = _fold_runs(group)
    if not runs:
        raise RunError(f"{group.name}: no fold run was started; start the k-fold again (`imgcls-console kfold "
                       f"{record.get('experiment') or 'EXPERIMENT'}`)")
    if record.get("state") == "finished" and len({fold for fold, _ in runs}) == folds:
        raise RunError(f"{group.name}: every fold finished and the ensemble was evaluated; nothing to resume")
    _check_tta(tta)
    base = read_config(runs[0][1])
    base.name = str(record.get("name") or base.name.rsplit("-fold", 1)[0])
    base.experiment = record.get("experiment") or base.experiment
    record.update(state="running", tta=tta if tta is not None else record.get("tta"),
                  combine=combine if combine is not None else record.get("combine"))
    record.pop("error", None)
    write_record(group, record)
    return _train_folds(group, record, base, listeners, stop)


def _check_tta(tta: str | None) -> None:
    """The ensemble's TTA, used after every fold has trained: refused before the first."""
    from engine.augment.tta import tta_views

    if tta is not None:
        try:
            tta_views(tta)
        except ConfigError as exc:
            raise ConfigError(f"--tta {tta}: {str(exc).removeprefix('eval.tta: ')}") from None


def _fold_runs(group: Path) -> list[tuple[int, Path]]:
    """(fold, run folder) of every fold run in the group, oldest first (a fold trained again has two)."""
    found = []
    for path in sorted(p for p in group.iterdir() if is_run_dir(p)):
        try:
            fold = read_config(path).data.fold
        except EngineError:
            continue
        if isinstance(fold, int):
            found.append((fold, path))
    return found


def _fold_run(group: Path, fold: int) -> Path | None:
    """The run that stands for `fold`: a finished one, else the newest."""
    runs = [path for index, path in _fold_runs(group) if index == fold]
    finished = [path for path in runs if read_status(path).get("state") == "finished"]
    return (finished or runs or [None])[-1]


def _train_folds(group: Path, record: dict[str, Any], config: ExperimentConfig, listeners: list[Any] | None,
                 stop: Any) -> dict[str, Any]:
    """Bring every fold to an end (kept when finished, resumed, or trained), recording each; then the ensemble."""
    from engine.runner import resume_run, start_run

    folds = int(record["folds"])
    record["per_fold"], record["members"] = [], []
    for fold in range(folds):
        existing = _fold_run(group, fold)
        try:
            if existing is not None and read_status(existing).get("state") == "finished":
                status = {**read_status(existing), "run_dir": str(existing)}
            elif existing is not None and saved_checkpoints(existing):
                status = resume_run(existing, listeners=listeners, stop=stop)
            else:  # never started, or stopped before its first checkpoint
                status = start_run(fold_config(config, folds, fold), group, listeners=listeners, stop=stop,
                                   parent=group.name)
        except BaseException as exc:  # the record must not say "running" for ever
            if isinstance(exc, EngineError) and not any(is_run_dir(p) for p in group.iterdir()):
                shutil.rmtree(group, ignore_errors=True)  # bad input before any fold trained: no group left
                raise
            record["state"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            record["error"] = f"fold {fold}: {type(exc).__name__}: {exc}"
            write_record(group, record)
            raise
        run_dir = Path(status["run_dir"])
        record["members"].append(run_dir.name)
        record["per_fold"].append({"fold": fold, "run": run_dir.name, "run_dir": str(run_dir),
                                   **{k: status.get(k) for k in FOLD_KEYS}})
        record["cv"] = cross_validation(record["per_fold"])
        write_record(group, record)
        if status.get("state") != "finished":
            record["state"] = status.get("state", "failed")
            write_record(group, record)
            return record
    try:
        record["ensemble"] = fold_ensemble(group, record, tta=record.get("tta"), combine=record.get("combine"))
    except BaseException as exc:  # every fold trained; `resume GROUP` evaluates the ensemble again
        record["state"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record["error"] = f"fold ensemble: {type(exc).__name__}: {exc}"
        write_record(group, record)
        raise
    record["state"] = "finished"
    write_record(group, record)
    return record


def fold_ensemble(group: Path, record: dict[str, Any], *, tta: str | None, combine: str | None) -> dict[str, Any]:
    """The fold models' ensemble on the shared test split (best checkpoints); an error note when impossible."""
    from engine.ensemble import evaluate_ensemble
    from engine.members import EvalOptions, checkpoint_ref

    refs = [checkpoint_ref(Path(f["run_dir"])) for f in record["per_fold"]]
    try:
        result = evaluate_ensemble(refs, EvalOptions(split="test", tta=tta), combine, out_dir=group)
    except DataError as exc:
        return {"error": str(exc)}
    keep = ("members", "split", "tta", "combine", "accuracy", "top5", "loss", "macro_f1", "count",
            "member_metrics", "most_confused", "path", "confusion_png")
    return {k: result.get(k) for k in keep}


def list_groups(runs_root: Path) -> list[Path]:
    """The k-fold group folders of a runs folder, oldest name first."""
    if not runs_root.is_dir():
        return []
    return sorted(p for p in runs_root.iterdir() if p.is_dir() and (p / RECORD).is_file())
