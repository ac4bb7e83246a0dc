"""Starting, resuming and fine-tuning runs: the run folder around a Trainer, and what happens on failure.

`start_run` is the one entry point of a new run (the headless `train` command, k-fold and the console's child
process all call it); under torchrun, rank 0 owns the run folder.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import checkpoint as ckpt
from engine import distributed
from engine.config import ExperimentConfig, with_absolute_paths
from engine.errors import Cancelled, CheckpointError, EngineError
from engine.events import EventWriter
from engine.presets import content_hash
from engine.runs import RunFolder
from engine.runtime import StopRequest, pick_device
from engine.train import Trainer, config_dict


def latest_resumable(run_dir: Path) -> Path:
    """The checkpoint a resume continues from: the newest intact one with training state (`ckpt.resume_point`)."""
    return ckpt.resume_point(run_dir).folder


RESUMABLE_OVERRIDES = ("train.epochs", "train.log_every", "train.checkpoint.", "train.early_stop.")
INCOMPATIBLE_KEYS = ("model.name", "model.options", "data.source", "data.root", "data.csv_file",
                     "data.label_column", "data.channels", "data.image_size")


def incompatible_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose change makes a checkpoint unusable (architecture, classes, input shape)."""
    changed = []
    for dotted in INCOMPATIBLE_KEYS:
        section, key = dotted.split(".")
        if old.get(section, {}).get(key) != new.get(section, {}).get(key):
            changed.append(f"{dotted}: {old.get(section, {}).get(key)!r} -> {new.get(section, {}).get(key)!r}")
    return changed


def start_run(config: ExperimentConfig, runs_root: Path, *, listeners: list[Any] | None = None,
              stop: StopRequest | None = None, parent: str | None = None) -> dict[str, Any]:
    """Create a run folder for `config` and train it; returns the final status (with `run_dir`)."""
    from engine.runs import RunLock, create_run, write_config

    info = distributed.from_environment()
    pick_device(config.train.device)  # a device this machine lacks is refused before any folder exists
    config = with_absolute_paths(config)
    run_dir = lock = None
    if info.is_main:
        run_dir = create_run(runs_root, config.name)
        lock = RunLock(run_dir).acquire()
        write_config(run_dir, config)
    try:
        run_dir = Path(_broadcast_path(run_dir, info, config))
        return _drive(config, run_dir, listeners, stop, parent=parent, fresh=True)
    finally:
        if lock is not None:
            lock.release()


def train_prepared(run_dir: Path, *, listeners: list[Any] | None = None, stop: StopRequest | None = None,
                   parent: str | None = None) -> dict[str, Any]:
    """Train a run whose folder `engine.launch.prepare_run` made (config.yaml written, status `starting`).

    The folder already belongs to whoever launched it, so a failure of any kind keeps it, marked `failed`
    with the error, for a viewer to show."""
    from engine.runs import read_config

    from engine.runs import RunLock

    with _main_rank_lock(RunLock(run_dir)):
        config = read_config(run_dir)
        info = distributed.from_environment()
        _broadcast_path(run_dir, info, config)  # joins the process group under torchrun
        return _drive(config, run_dir, listeners, stop, parent=parent)


def resume_run(run_dir: Path, *, overrides: list[str] | None = None, listeners: list[Any] | None = None,
               stop: StopRequest | None = None, extend: str | None = None) -> dict[str, Any]:
    """Continue a run from its `last` checkpoint, exactly; `overrides` may extend it (e.g. train.epochs): epochs
    past its schedule's plan follow a new segment (`extend`, default constant; see engine.schedule_extension.extend_schedule).

    The run folder's lock is taken first: a second resume (or any writer) is refused at once. A resume refused
    before training leaves status.json and config.yaml as they were and records the attempt as an event."""
    from engine.schedule_extension import describe_extension
    from engine.runs import RunLock, read_config

    with _main_rank_lock(RunLock(run_dir)):
        try:
            config, point = _plan_resume(run_dir, overrides, extend)
        except EngineError as exc:
            _record_refusal(run_dir, exc)
            raise

        def record_config() -> None:  # only once the checkpoint is restored: a failed resume changes nothing
            if distributed.from_environment().is_main:
                write_config(run_dir, config)

        from engine.runs import write_config

        note = point.note()  # a damaged `last` passed over: which checkpoint, and what it costs
        extended = config.schedule.extend != read_config(run_dir).schedule.extend
        plan = describe_extension(config.schedule, config.train.epochs) if extended else None  # the LR from here
        return _drive(config, run_dir, listeners, stop, resume_from=point.folder, on_ready=record_config,
                      notes=[note] if note else [], plans=[plan] if plan else [])


def _plan_resume(run_dir: Path, overrides: list[str] | None,
                 extend: str | None = None) -> tuple[ExperimentConfig, ckpt.ResumePoint]:
    """The config a resume continues with (its schedule extended, never re-spread, when train.epochs grows) and
    the checkpoint folder it starts from; refusals raise."""
    from engine.config import from_dict, to_dict
    from engine.errors import RunError
    from engine.schedule_extension import extend_run
    from engine.presets import apply_overrides, load_mapping
    from engine.runs import read_config, read_status

    status = read_status(run_dir)
    if status.get("state") == "running":
        raise RunError(f"{run_dir.name} is still training (pid {status.get('pid')} on {status.get('host')}); "
                       "stop it first (Ctrl-C there, or kill -TERM the pid)")
    config = before = read_config(run_dir)
    point = ckpt.resume_point(run_dir)
    folder = point.folder
    saved = from_dict(load_mapping(folder / ckpt.CONFIG), str(folder / ckpt.CONFIG))
    for text in overrides or []:
        key = text.partition("=")[0].strip()
        if not key.startswith(RESUMABLE_OVERRIDES):
            allowed = ", ".join(k + "*" if k.endswith(".") else k for k in RESUMABLE_OVERRIDES)
            raise CheckpointError(f"--set {text}: resume continues the same run and may only change {allowed}; "
                                  f"start a new run from its weights with "
                                  f"`imgcls-console finetune {run_dir.name}:last --set {text}`")
    if overrides:
        config = from_dict(apply_overrides(to_dict(config), overrides), "--set")
    meta = point.meta
    done, step_in_epoch = int(meta.get("epoch", 0)), int(meta.get("step_in_epoch", 0))
    if config.train.epochs <= done:
        partly = f" and {step_in_epoch} steps of epoch {done + 1}" if step_in_epoch else ""
        what = ("nothing to resume" if config.train.epochs == done and not step_in_epoch
                else f"train.epochs={config.train.epochs} would end it before that")
        raise CheckpointError(f"{run_dir.name} has trained {done} epochs{partly}: {what}; extend it with "
                              f"--set train.epochs={done + 10} (say) or use `finetune`")
    config = extend_run(before, config, extend)
    changes = incompatible_changes(to_dict(saved), to_dict(config))
    if changes:
        raise CheckpointError("cannot resume: the config differs from the checkpoint's in " + "; ".join(changes))
    return config, point


def _record_refusal(run_dir: Path, exc: BaseException) -> None:
    """A refused resume is an event of the run (its status and config stay as they were)."""

    if not distributed.from_environment().is_main or not RunFolder(run_dir).events.parent.is_dir():
        return
    writer = EventWriter(RunFolder(run_dir).events)
    try:
        writer.emit("warning", message=f"resume refused: {exc}")
    finally:
        writer.close()


class _main_rank_lock:
    """Hold a RunLock on rank 0 only (under torchrun every rank trains the same folder)."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.main = distributed.from_environment().is_main

    def __enter__(self) -> Any:
        return self.lock.acquire() if self.main else None

    def __exit__(self, *exc: object) -> None:
        if self.main:
            self.lock.release()


def finetune_config(source: Path, config: ExperimentConfig) -> ExperimentConfig:
    """`config` starting from the weights of checkpoint folder `source` (they become its `model.pretrained`,
    so its config.yaml re-runs it as it was). The data may differ (transfer learning: a head for other classes
    is replaced when the weights are loaded); what cannot work is refused by `engine.transfer.check_finetune`."""
    import dataclasses

    from engine.config import from_dict
    from engine.presets import load_mapping
    from engine.transfer import check_finetune

    saved = from_dict(load_mapping(source / ckpt.CONFIG), str(source / ckpt.CONFIG))
    check_finetune(saved, config, source)
    # the weights that were evaluated: EMA ones when the run kept them and evaluated with them
    weights = source / ckpt.EMA if (source / ckpt.EMA).is_file() and saved.eval.use_ema else source / ckpt.WEIGHTS
    # a new run plans its schedule over its own epochs: an extension of the source run is not inherited
    schedule = dataclasses.replace(config.schedule, plan_epochs=None, extend=[])
    return dataclasses.replace(config, model=dataclasses.replace(config.model, pretrained=str(weights.resolve())),
                               schedule=schedule)


@dataclass(frozen=True)
class FinetunePlan:
    """What `finetune RUN[:CHECKPOINT] [EXPERIMENT]` starts: the checkpoint folder whose weights start it, the new
    run's config (before `finetune_config`) and the parent reference recorded in its status."""

    source: Path
    config: ExperimentConfig
    parent: str


def plan_finetune(runs_root: Path, reference: str, experiment: str | None = None,
                  overrides: list[str] | None = None, name: str | None = None) -> FinetunePlan:
    """The fine-tune of checkpoint `reference` (RUN[:CHECKPOINT], best by default): the run's own config renamed
    `<name>-ft` (or the experiment given, named `<experiment>-ft`), with `overrides`; damaged weights are refused
    before anything is made. Shared by the `finetune` command and the console."""
    from engine.config import from_dict, renamed, to_dict
    from engine.members import parse_ref
    from engine.presets import apply_overrides, resolve_experiment
    from engine.runs import read_config

    ref = parse_ref(runs_root, reference)
    folder = ckpt.checkpoint_dir(ref.run_dir, ref.name)
    ckpt.load_checkpoint(folder, with_state=False)
    if experiment is None:
        base = read_config(ref.run_dir)
        config = from_dict(apply_overrides(to_dict(renamed(base, f"{base.name}-ft")), overrides or []), "--set")
    else:  # a run of that experiment from these weights: named apart, so `X` keeps naming X's own runs
        config = resolve_experiment(experiment, overrides or [])
        if not config.name.endswith("-ft"):  # a composition already named as a fine-tune (the console's) keeps it
            config = renamed(config, f"{config.name}-ft")
    if name:
        config = renamed(config, name)
    return FinetunePlan(folder, config, f"{ref.run_dir.name}:{folder.name}")


def finetune_run(source: Path, config: ExperimentConfig, runs_root: Path, *, parent: str,
                 listeners: list[Any] | None = None, stop: StopRequest | None = None) -> dict[str, Any]:
    """A new run of `config` starting from the weights of checkpoint folder `source`; the parent is recorded
    in its status."""
    return start_run(finetune_config(source, config), runs_root, listeners=listeners, stop=stop, parent=parent)


def _drive(config: ExperimentConfig, run_dir: Path, listeners: list[Any] | None, stop: StopRequest | None,
           *, parent: str | None = None, resume_from: Path | None = None, fresh: bool = False,
           on_ready: Callable[[], None] | None = None, notes: list[str] | None = None,
           plans: list[str] | None = None) -> dict[str, Any]:
    """Run a Trainer in `run_dir`, recording failures in status.json and events.jsonl.

    A new run of the `train` command whose setup fails on bad input (missing data, corrupt image) leaves no
    folder behind: it never trained, and the error says what to fix. Any other run (a launched one, a resume
    that restored its state) keeps its folder, marked failed, for a viewer to show.
    """
    import socket

    info = distributed.from_environment()
    folder = RunFolder(run_dir)
    stop = stop or StopRequest()
    stop.stop_file = folder.stop_request
    if info.is_main:
        _clear_stale_stop_request(folder.stop_request)
    events = EventWriter(folder.events, listeners) if info.is_main else EventWriter(None)
    trainer = Trainer(config, run_dir, events, stop, parent=parent, dist_info=info)
    try:
        events.emit("run_start", run=str(run_dir), name=run_dir.name, pid=os.getpid(), host=socket.gethostname(),
                    config_hash=content_hash(config_dict(config)), parent=parent,
                    resumed_from=str(resume_from) if resume_from else None)
        if info.is_main:
            _record_environment(folder, events, trainer.device)
        for note in notes or []:
            events.emit("warning", message=note)
        for plan in plans or []:
            events.emit("note", message=plan)
        trainer.setup(resume_from=resume_from)
        if resume_from is not None:
            assert trainer.parts is not None
            ckpt.check_classes(resume_from, trainer.parts.classes, f"cannot resume {run_dir.name}")
        if on_ready is not None:
            on_ready()
        status = trainer.run()
        distributed.finish_together(info)
    except KeyboardInterrupt:
        trainer.record_status("interrupted", reason="stopped at once by a second signal", ended=time.time())
        events.emit("run_end", state="interrupted", reason="second signal", epochs_done=trainer.progress.epoch,
                    best_val_acc=trainer.progress.best_val_acc, test_acc=None, wall_s=trainer.wall_s())
        raise
    except EngineError as exc:
        if fresh and trainer.parts is None and info.is_main:
            events.close()
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        if isinstance(exc, Cancelled) and trainer.parts is None and resume_from is None:  # stopped while loading
            trainer.record_status("interrupted", reason=str(exc), ended=time.time())
            events.emit("run_end", state="interrupted", reason=str(exc), epochs_done=0, best_val_acc=None,
                        test_acc=None, wall_s=trainer.wall_s())
            raise
        _record_outcome(trainer, events, exc, resume_from)
        raise
    except BaseException as exc:
        _record_outcome(trainer, events, exc, resume_from)
        raise
    finally:
        events.close()
        if info.is_main:
            folder.stop_request.unlink(missing_ok=True)
        distributed.shutdown(info)
    return {"run_dir": str(run_dir), **status}


def _record_environment(folder: RunFolder, events: EventWriter, device: object) -> None:
    """What this start or resume runs with: an event each time, and environment.json from the first start."""
    from engine.provenance import collect_environment, write_environment

    env = collect_environment(str(device))
    events.emit("environment", env=env)
    if not folder.environment.exists():
        write_environment(folder.environment, env)


def _clear_stale_stop_request(path: Path) -> None:
    """A stop file left from an earlier session of the run (a `train`/`resume` started by hand): drop it. A run
    launched by engine.launch keeps it: the launcher cleared it before starting the process, so one found now was
    asked for while the process was starting."""
    if os.environ.get(LAUNCHED_ENV) != "1":
        path.unlink(missing_ok=True)


LAUNCHED_ENV = "IMGCLS_LAUNCHED"  # set by engine.launch for the training processes it starts




def _record_outcome(trainer: Trainer, events: EventWriter, exc: BaseException, resume_from: Path | None) -> None:
    """A failure of a run that trained (or tried to) is its status; a resume that never restored its checkpoint
    leaves the run as it was and is only recorded as an event."""
    if resume_from is not None and not trainer.restored:
        events.emit("warning", message=f"resume refused: {type(exc).__name__}: {exc}")
    else:
        _record_failure(trainer, events, exc)


def _record_failure(trainer: Trainer, events: EventWriter, exc: BaseException) -> None:
    """status.json and a run_end event for a run that stopped on an error."""
    reason = f"{type(exc).__name__}: {exc}"
    trainer.record_status("failed", reason=reason, ended=time.time())
    events.emit("run_end", state="failed", reason=reason, epochs_done=trainer.progress.epoch,
                best_val_acc=trainer.progress.best_val_acc, test_acc=None, wall_s=trainer.wall_s())


def _broadcast_path(run_dir: Path | None, info: distributed.Dist, config: ExperimentConfig) -> str:
    """Rank 0's new run folder, on every rank (the process group is joined here, early)."""
    distributed.init(info, pick_device(config.train.device))
    return str(distributed.broadcast(str(run_dir) if run_dir else None, info))
