"""Runs in the background: launch training in a child process, follow its events, ask it to stop.

`launch_run` checks what can be checked before a folder exists (the config, the device, the data files and
label files), then makes the run folder (known to the caller at once, status `starting`) and starts a child
process in its own session — `python -m engine.launch start RUN_DIR`, which trains through the same
`engine.runner` functions as the `train` command — so the run survives whoever launched it. A failure in the
child keeps the folder, marked `failed` with its error; what the child printed is in the run's `output.log`.

`follow` yields a run's events as they are appended (whether it was launched here, by the CLI, or before the
viewer started); `request_stop` asks for a graceful stop through a file every rank polls (the step ends and
`last` is saved).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import ExperimentConfig, with_absolute_paths
from engine.errors import EngineError, RunError
from engine.events import Event, EventFollower
from engine.processes import child_env, exit_now
from engine.runs import (FINAL_STATES, RunFolder, atomic_write_text, create_run, read_status, saved_checkpoints,
                         write_config, write_status)


@dataclass
class RunHandle:
    """A training process started by `launch_run`/`launch_resume` and the run folder it trains into."""

    run_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log_offset: int = 0
    command: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def poll(self) -> int | None:
        """The child's exit code, or None while it runs (reaps it once it has ended)."""
        return self.process.poll() if self.process is not None else None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to end; its exit code."""
        if self.process is None:
            raise RunError(f"{self.run_dir.name} was not launched from this process")
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Ask the run to stop gracefully (see `request_stop`)."""
        request_stop(self.run_dir)

    def failure(self) -> str | None:
        """When the child ended with an error: the last line it printed (its one-line error), else None."""
        code = self.poll()
        if code in (None, 0):
            return None
        return last_output_line(self.run_dir, self.log_offset) or f"the training process exited with code {code}"


def last_output_line(run_dir: Path, offset: int = 0) -> str | None:
    """The last non-empty line a launched process wrote to the run's output.log after byte `offset`."""
    try:
        with open(RunFolder(run_dir).output_log, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else None


def preflight(config: ExperimentConfig) -> None:
    """Every check that needs no run folder: the config's own checks (augment ops, model options, optimizer
    and schedule ranges), the device, and the data source's files and label files. Raises EngineError."""
    from engine.data.sources import locate
    from engine.presets import validate_deep
    from engine.runtime import pick_device

    validate_deep(config, None)
    pick_device(config.train.device)
    locate(config.data)


def prepare_run(config: ExperimentConfig, runs_root: Path, *, parent: str | None = None) -> Path:
    """Check `config`, then make its run folder with config.yaml and a `starting` status; the folder."""
    from engine.compare import model_section_label

    preflight(config)
    config = with_absolute_paths(config)
    run_dir = create_run(runs_root, config.name).resolve()
    write_config(run_dir, config)
    write_status(run_dir, {"state": "starting", "name": run_dir.name, "experiment": config.experiment or config.name,
                           "data": config.data.source, "model": config.model.name,
                           "model_preset": model_section_label(config.model), "epochs": config.train.epochs,
                           "epoch": 0, "host": socket.gethostname(), "started": time.time(), "parent": parent})
    return run_dir


def launch_run(config: ExperimentConfig, runs_root: Path, *, parent: str | None = None, nproc: int = 1) -> RunHandle:
    """Start training `config` in a child process; returns at once with the new run folder."""
    run_dir = prepare_run(config, runs_root, parent=parent)
    args = ["start", str(run_dir)] + (["--parent", parent] if parent else [])
    handle = _spawn(run_dir, args, nproc)
    status = read_status(run_dir)
    if status.get("state") == "starting":  # the child has not written its own status yet
        write_status(run_dir, {**status, "pid": handle.pid})
    return handle


def launch_resume(run_dir: Path, overrides: list[str] | None = None, *, nproc: int | None = None) -> RunHandle:
    """Resume a run in a child process (the `resume` command's checks run there; a refused resume leaves the
    run as it was and its one-line error in `RunHandle.failure()`); a run trained in N processes (DDP) resumes in
    as many on this machine unless `nproc` says otherwise."""
    run_dir = Path(run_dir).resolve()
    status = read_status(run_dir)
    if status.get("state") in ("running", "starting"):
        raise RunError(f"{run_dir.name} is still training (pid {status.get('pid')} on {status.get('host')}); "
                       "stop it first")
    if not saved_checkpoints(run_dir):
        raise RunError(f"{run_dir.name} has no checkpoint to resume from")
    args = ["resume", str(run_dir)]
    for text in overrides or []:
        args += ["--set", text]
    return _spawn(run_dir, args, nproc if nproc is not None else trained_processes(run_dir))


def trained_processes(run_dir: Path) -> int:
    """How many processes wrote the run's last checkpoint (its meta.json `world_size`; 1 when it cannot be read:
    the resume itself then says what is wrong with the checkpoint)."""
    import json

    try:
        meta = json.loads((RunFolder(run_dir).checkpoints / "last" / "meta.json").read_text(encoding="utf-8"))
        size = meta.get("world_size", 1) if isinstance(meta, dict) else 1
    except (OSError, ValueError):
        return 1
    return size if isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= 64 else 1


def launch_finetune(source: Path, config: ExperimentConfig, runs_root: Path, *, parent: str) -> RunHandle:
    """A new run of `config` from the weights of checkpoint folder `source`, in a child process."""
    from engine.runner import finetune_config

    return launch_run(finetune_config(source, config), runs_root, parent=parent)


def _spawn(run_dir: Path, args: list[str], nproc: int) -> RunHandle:
    folder = RunFolder(run_dir)
    folder.stop_request.unlink(missing_ok=True)
    if nproc > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   "-m", "engine.launch", *args]
    else:
        command = [sys.executable, "-m", "engine.launch", *args]
    env = child_env(PYTHONUNBUFFERED="1", IMGCLS_LAUNCHED="1")  # engine.runner.LAUNCHED_ENV
    with open(folder.output_log, "ab") as log:
        offset = log.tell()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=env, cwd=run_dir)
    return RunHandle(run_dir, process, offset, command)


def request_stop(run_dir: Path) -> bool:
    """Ask a training run to stop gracefully: the current step ends, `last` is saved, the run is marked
    interrupted (and is resumable). Works for runs started anywhere that see this folder, every rank under
    torchrun. False when the run is not training (nothing asked)."""
    status = read_status(run_dir)
    if status.get("state") not in ("running", "starting"):
        return False
    atomic_write_text(RunFolder(run_dir).stop_request, f"{time.time()}\n")
    return True


def follow(run_dir: Path, *, handle: RunHandle | None = None, poll_s: float = 0.1,
           timeout: float | None = None) -> Iterator[Event]:
    """The run's events, past ones first, then each one as it is appended, until the run ends (its
    process is gone and every event is read) or `timeout` seconds pass. A torn last line waits for its end;
    a file that appears late is waited for."""
    follower = EventFollower(RunFolder(run_dir).events)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        events = follower.poll()
        yield from events
        if not events and _ended(run_dir, handle):
            yield from follower.poll()  # whatever landed between the last poll and the end
            return
        if deadline is not None and time.monotonic() > deadline:
            return
        if not events:
            time.sleep(poll_s)


def _ended(run_dir: Path, handle: RunHandle | None) -> bool:
    """Has the run's training process ended? (Its own child when launched here, else its status.)"""
    if handle is not None and handle.process is not None:
        return handle.poll() is not None
    try:
        return read_status(run_dir).get("state") in (*FINAL_STATES, "unknown")
    except EngineError:
        return True


def main(argv: list[str] | None = None) -> int:
    """The child process: `start RUN_DIR [--parent P]` or `resume RUN_DIR [--set KEY=VALUE ...]`."""
    from engine import distributed
    from engine.runner import resume_run, train_prepared
    from engine.runtime import StopRequest, install_stop_handlers, restore_stop_handlers

    parser = argparse.ArgumentParser(prog="python -m engine.launch")
    parser.add_argument("action", choices=["start", "resume"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--parent")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    stop = StopRequest()
    install_stop_handlers(stop)
    try:
        if args.action == "start":
            status = train_prepared(args.run_dir, listeners=[_print_epoch], stop=stop, parent=args.parent)
        else:
            status = resume_run(args.run_dir, overrides=args.overrides, listeners=[_print_epoch], stop=stop)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("stopped at once (second signal); the last complete checkpoint is kept", file=sys.stderr, flush=True)
        return stop.exit_code
    finally:
        restore_stop_handlers(stop)
    if not distributed.from_environment().is_main:
        return 0
    state = status.get("state")
    print(f"{state}: {status.get('reason')}", flush=True)
    return {"finished": 0, "diverged": 3, "interrupted": stop.exit_code}.get(str(state), 1)


def _print_epoch(event: dict[str, Any]) -> None:
    """One line per epoch in output.log, for `tail -f` (the events file holds everything)."""
    if event["type"] == "epoch":
        print(f"epoch {event['epoch']}: train loss {event['train_loss']:.4f}, val acc {event.get('val_acc')}",
              flush=True)
    elif event["type"] == "warning":
        print(f"warning: {event['message']}", flush=True)


def exit_rank(code: int) -> None:
    """End the process with `code`; a rank under torchrun ends without the interpreter's teardown, where gloo's
    threads being destroyed aborted a finished rank (SIGABRT) and torchrun then failed the whole job (as the
    `imgcls-console` entry point does for the CLI's ranks: console.cli.main)."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        sys.exit(code)
    exit_now(code)


if __name__ == "__main__":
    exit_rank(main())
