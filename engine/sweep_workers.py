"""Several workers on one sweep: local processes (one GPU each, or several per GPU, or CPU cores shared out) or
Slurm jobs through submitit, each pulling trials from the same study until its budget is spent.

A worker is `imgcls-console sweep worker NAME`: it opens the study, then claims, trains and tells trials
(engine.sweep_trials) exactly as a one-process sweep does; the claim lock keeps the budget exact.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.processes import child_env, slurm_executor
from engine.sweep import sweep_dir

CPU_THREADS_KEY = "train.cpu_threads"
PR_SET_PDEATHSIG = 1  # linux prctl: the signal a child receives when its parent dies


@dataclass(frozen=True)
class WorkerSlot:
    """One local worker: its GPU (CUDA_VISIBLE_DEVICES), or None on CPU, and its CPU thread share."""

    index: int
    gpu: str | None
    cpu_threads: int | None


def plan_workers(workers: int | None, gpus: Sequence[str] | None, cores: int | None = None) -> list[WorkerSlot]:
    """The local workers: `workers` of them (default: one per GPU, else 1), given the GPUs round-robin (several
    trials per GPU when there are more workers than GPUs); on CPU the cores are shared out among them."""
    gpu_list = [g.strip() for g in gpus or [] if g.strip()]
    if gpus is not None and not gpu_list:
        raise ConfigError(f"--gpus {','.join(gpus)!r}: expected GPU ids such as 0,1")
    count = workers if workers is not None else max(1, len(gpu_list))
    if count < 1:
        raise ConfigError(f"--workers {count}: expected at least 1")
    if gpu_list:
        return [WorkerSlot(i, gpu_list[i % len(gpu_list)], None) for i in range(count)]
    available = cores or os.cpu_count() or 1
    if count > available:
        raise ConfigError(f"--workers {count}: this machine has {available} CPU core{'s' * (available > 1)} and a "
                          f"CPU worker needs one; use --workers {available} or fewer, or give GPUs with --gpus")
    share = max(1, available // count) if count > 1 else None
    return [WorkerSlot(i, None, share) for i in range(count)]


def worker_overrides(slot: WorkerSlot, overrides: Sequence[str]) -> list[str]:
    """The `--set` overrides a worker adds: its CPU thread share, unless the sweep sets the threads itself."""
    if slot.cpu_threads is None or any(o.startswith(f"{CPU_THREADS_KEY}=") for o in overrides):
        return []
    return [f"{CPU_THREADS_KEY}={slot.cpu_threads}"]


def worker_command(name: str, storage: str, runs_root: Path, *, extra: Sequence[str] = (),
                   time_limit: float | None = None, quiet: bool = False) -> list[str]:
    """The command line of one worker process (the same program, its hidden `sweep worker` command)."""
    command = [sys.executable, "-m", "console.cli", "sweep", "worker", name, "--storage", storage,
               "--runs-dir", str(runs_root)]
    if time_limit is not None:
        command += ["--time", f"{time_limit:g}"]
    for override in extra:
        command += ["--set", override]
    return command + (["--quiet"] if quiet else [])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the parent dies (a killed `sweep run` stops its workers, whose
    trials are then saved and recorded as interrupted). Linux only; elsewhere nothing."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def start_workers(name: str, storage: str, runs_root: Path, slots: Sequence[WorkerSlot], overrides: Sequence[str],
                  *, time_limit: float | None = None, quiet: bool = False) -> list[subprocess.Popen[bytes]]:
    """Start one worker process per slot, each in its own session (a terminal's Ctrl-C reaches them once,
    forwarded by `forward_signal`), sharing this process's stderr for their progress lines."""
    processes = []
    for slot in slots:
        env = child_env()
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        command = worker_command(name, storage, runs_root, extra=worker_overrides(slot, overrides),
                                 time_limit=time_limit, quiet=quiet)
        processes.append(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=_die_with_parent))
    return processes


def forward_signal(processes: Sequence[subprocess.Popen[bytes]], signum: int) -> None:
    """Pass a stop signal on to the workers still running (first: finish the trial's step and save)."""
    for process in processes:
        if process.poll() is None:
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                pass


def wait_workers(processes: Sequence[subprocess.Popen[bytes]]) -> list[int]:
    """Wait for every worker; their exit codes."""
    return [process.wait() for process in processes]


# ---------------------------------------------------------------------------------------------- Slurm (submitit)


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how the Slurm jobs run: partition, GPUs per job, time limit (minutes), jobs (an array of that
    many), how many run at once, and the cluster kind (`slurm`; `local` runs them as local processes)."""

    jobs: int = 1
    partition: str | None = None
    gpus_per_job: int = 1
    time_minutes: int = 240
    parallel: int | None = None
    cluster: str = "slurm"


def slurm_worker(name: str, storage: str, runs_root: str, extra: list[str]) -> dict[str, Any]:
    """What each Slurm job runs: a worker of the sweep in this process until the budget is spent; its summary."""
    from engine.stop import StopRequest, install_stop_handlers, restore_stop_handlers
    from engine.sweep import load_study, open_storage
    from engine.sweep_trials import run_sweep

    study, spec, overrides = load_study(name, open_storage(storage))
    stop = StopRequest()  # Slurm sends SIGTERM before the time limit: the trial's run is saved, the job ends
    install_stop_handlers(stop)
    try:
        return run_sweep(study, spec, [*overrides, *extra], Path(runs_root), stop=stop)
    finally:
        restore_stop_handlers(stop)


def submit_slurm(name: str, storage: str, runs_root: Path, options: SlurmOptions, extra: Sequence[str] = ()
                 ) -> tuple[list[Any], Path]:
    """Submit `options.jobs` workers of the sweep as a Slurm job array (submitit); the jobs and their log folder
    (`<runs>/sweeps/<name>-jobs/`, private: submitit keeps its job pickles there)."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("submitting to Slurm needs submitit: pip install 'imgcls-console[slurm]'") from None
    folder = sweep_dir(runs_root) / f"{name}-jobs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    executor = slurm_executor(submitit, folder, options.cluster)
    parameters: dict[str, Any] = {"name": f"sweep-{name}", "timeout_min": options.time_minutes,
                                  "gpus_per_node": options.gpus_per_job, "tasks_per_node": 1, "nodes": 1}
    if options.partition:
        parameters["slurm_partition"] = options.partition
    if options.parallel:
        parameters["slurm_array_parallelism"] = options.parallel
    executor.update_parameters(**parameters)
    count = options.jobs
    jobs = executor.map_array(slurm_worker, [name] * count, [storage] * count, [str(runs_root)] * count,
                              [list(extra)] * count)
    return jobs, folder
