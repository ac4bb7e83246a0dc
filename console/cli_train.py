"""`train` and `resume`: headless training into a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from console.common import (
    RUN_RULE, JsonOption, OverrideOption, RunsDirOption, WeightsNote, err_console, escape, print_json, reports_errors,
)
from console.cli_schedule import ExtendScheduleOption

if TYPE_CHECKING:
    from engine.distributed import Nodes

SUMMARY_KEYS = ("run_dir", "state", "reason", "epochs", "epoch", "best_val_acc", "best_epoch", "test_acc",
                "test_loss", "params", "macs", "wall_s")
EXIT_CODES = {"finished": 0, "failed": 1, "diverged": 3}
NameOption = Annotated[str | None, typer.Option(
    "--name", metavar="NAME", help="Name of the run: its folder is NAME-<date>-<time> and config.yaml's `name` is "
                                   "NAME, its `experiment` the experiment's name (default: the experiment's name).",
    show_default=False)]


NprocOption = Annotated[int, typer.Option("--nproc", help="Processes for DDP (one per GPU; gloo on CPU), via torchrun; "
                                                          "per machine with --nnodes.", min=1)]
NnodesOption = Annotated[int, typer.Option("--nnodes", help="Machines training this one run (the same command on "
                                                            "each, with its --node-rank).", min=1)]
NodeRankOption = Annotated[int, typer.Option("--node-rank", help="This machine's rank, 0 to NNODES-1; the run folder "
                                                                 "is written on node 0.", min=0)]
EndpointOption = Annotated[str | None, typer.Option(
    "--rdzv-endpoint", metavar="HOST:PORT", help="Where the machines meet: node 0's address and a free port.",
    show_default=False)]


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    return {key: status.get(key) for key in SUMMARY_KEYS}


def _drive(json_out: bool, quiet: bool, work: Any) -> None:
    """Run `work(listeners, stop)` with signal handling and progress; print the summary; exit by state."""
    from console.progress import ProgressListener
    from engine.distributed import from_environment
    from engine.runtime import StopRequest, install_stop_handlers, restore_stop_handlers

    if not from_environment().is_main:  # DDP: rank 0 alone reports
        json_out, quiet = False, True
    stop = StopRequest()
    install_stop_handlers(stop)
    try:
        with ProgressListener(err_console, quiet=quiet) as listener:
            status = work([listener], stop)
    except KeyboardInterrupt:
        err_console.print("stopped at once (second signal); the last complete checkpoint is kept")
        raise typer.Exit(stop.exit_code) from None
    finally:
        restore_stop_handlers(stop)
    summary = _summary(status)
    if json_out:
        print_json(summary)
    elif from_environment().is_main:
        err_console.print(f"run folder: {summary['run_dir']}", highlight=False)
    if status["state"] == "interrupted":
        raise typer.Exit(stop.exit_code)
    code = EXIT_CODES.get(status["state"], 1)
    if code:
        err_console.print(f"[red]{status['state']}[/]: {escape(str(status.get('reason')))}", highlight=False,
                          soft_wrap=True)
        raise typer.Exit(code)


@reports_errors
def train(
    experiment: Annotated[str, typer.Argument(metavar="EXPERIMENT", help="Experiment preset name or YAML file (a run's config.yaml works).")],
    overrides: OverrideOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr (warnings still show).")] = False,
    nproc: NprocOption = 1,
    name: NameOption = None,
    nnodes: NnodesOption = 1,
    node_rank: NodeRankOption = 0,
    rdzv_endpoint: EndpointOption = None,
) -> None:
    """Train an experiment in the foreground; progress on stderr, results in a new run folder."""
    import os

    from engine.config import renamed
    from engine.distributed import check_nodes
    from engine.presets import resolve_experiment
    from engine.runs import runs_dir as pick_runs_dir
    from engine.runner import start_run

    nodes = check_nodes(nnodes, node_rank, rdzv_endpoint)  # before the config: a wrong flag is said at once
    config = resolve_experiment(experiment, overrides or [])
    if name:
        config = renamed(config, name)  # config.yaml keeps the experiment's name too
    if (nproc > 1 or nodes.count > 1) and "WORLD_SIZE" not in os.environ:
        from engine.distributed import Dist, per_rank_batch

        per_rank_batch(config.train.batch_size, Dist(0, nproc * nodes.count, 0))  # before any process starts
        _check_gpus(config.train.device, nproc)
        args = ["train", experiment, *_common_args(overrides, runs_dir, json_out, quiet)]
        _launch_torchrun(nproc, nodes, args + (["--name", name] if name else []))
    root = pick_runs_dir(runs_dir)
    note = WeightsNote(quiet=quiet)
    _drive(json_out, quiet, lambda listeners, stop: start_run(config, root, listeners=[*listeners, note], stop=stop))


@reports_errors
def resume(
    run: Annotated[str, typer.Argument(metavar="RUN", help=RUN_RULE)],
    overrides: OverrideOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr (warnings still show).")] = False,
    extend_schedule: ExtendScheduleOption = None,
    nproc: NprocOption = 1,
    nnodes: NnodesOption = 1,
    node_rank: NodeRankOption = 0,
    rdzv_endpoint: EndpointOption = None,
) -> None:
    """Continue an interrupted or finished run exactly from its last checkpoint; or finish a k-fold group (its
    unfinished folds resumed, the rest trained, then the fold ensemble).

    A run trained in N processes (--nproc, or across machines) resumes in as many: give the same --nproc (and
    --nnodes/--node-rank/--rdzv-endpoint on each machine, with the runs folder shared).

    --set train.epochs=N extends it without changing its past: the LR schedule keeps the length it was planned
    over, and the epochs past it follow a new segment that starts from the LR reached (by default it holds that
    LR; --extend-schedule picks another). The extension is recorded in the run's config (schedule.plan_epochs,
    schedule.extend), so its config.yaml re-runs it and later resumes are exact. See the plan first with
    `schedule preview RUN --epochs N`.
    """
    import os

    from engine.compare import group_match
    from engine.distributed import check_nodes
    from engine.runs import resolve_run
    from engine.runs import runs_dir as pick_runs_dir
    from engine.runner import resume_run

    nodes = check_nodes(nnodes, node_rank, rdzv_endpoint)
    group = group_match(pick_runs_dir(runs_dir), run)
    if group is not None:
        _resume_group(group, overrides, json_out, quiet, nproc * nodes.count)
        return
    run_dir = resolve_run(pick_runs_dir(runs_dir), run)
    if "WORLD_SIZE" not in os.environ and nodes.rank == 0:  # said before any process starts
        _check_process_count(Path(run_dir), nproc, nodes.count)
    if (nproc > 1 or nodes.count > 1) and "WORLD_SIZE" not in os.environ:
        args = ["resume", str(run_dir), *_common_args(overrides, runs_dir, json_out, quiet)]
        _launch_torchrun(nproc, nodes, args + (["--extend-schedule", extend_schedule] if extend_schedule else []))
    _drive(json_out, quiet, lambda listeners, stop: resume_run(Path(run_dir), overrides=overrides, listeners=listeners,
                                                               stop=stop, extend=extend_schedule))


def _resume_group(group: Path, overrides: list[str] | None, json_out: bool, quiet: bool, processes: int) -> None:
    """`resume GROUP`: a k-fold group's folds brought to their end, then its ensemble."""
    from console.cli_eval import drive_kfold
    from engine.errors import RunError
    from engine.kfold import resume_kfold

    if overrides or processes > 1:
        raise RunError(f"{group.name} is a k-fold group: it resumes as it was started (no --set, one process); "
                       "resume a fold run by its name to change it")
    drive_kfold(lambda listeners, stop: resume_kfold(group, listeners=listeners, stop=stop), json_out=json_out,
                quiet=quiet)


@reports_errors
def finetune(
    source: Annotated[str, typer.Argument(metavar="RUN[:CHECKPOINT]", help="RUN[:CHECKPOINT] whose weights start the new run (default best). " + RUN_RULE)],
    experiment: Annotated[str | None, typer.Argument(metavar="[EXPERIMENT]", help="Experiment for the new run (default: the run's own config).")] = None,
    overrides: OverrideOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr (warnings still show).")] = False,
    name: NameOption = None,
) -> None:
    """Start a new run from a checkpoint's weights (fine-tuning, or transfer to another data set).

    A new optimizer, schedule or augmentation, or another data set: every tensor is loaded, and the head is
    replaced when the classes differ. The model must be the run's; images are converted to its channels with
    --set data.channels=N.
    """
    from engine.runs import runs_dir as pick_runs_dir
    from engine.runner import finetune_run, plan_finetune

    root = pick_runs_dir(runs_dir)
    plan = plan_finetune(root, source, experiment, overrides, name)
    folder, config, parent = plan.source, plan.config, plan.parent
    note = WeightsNote(parent, quiet=quiet)
    _drive(json_out, quiet, lambda listeners, stop: finetune_run(folder, config, root, parent=parent,
                                                                 listeners=[*listeners, note], stop=stop))


def _check_process_count(run_dir: Path, nproc: int, nodes: int) -> None:
    """A run resumes in as many processes as wrote its last checkpoint (their RNG states are restored rank by rank)."""
    from engine.errors import ConfigError
    from engine.launch import trained_processes

    trained, asked = trained_processes(run_dir), nproc * nodes
    if trained != asked:
        how = f"--nproc {trained}" if nodes == 1 else f"{trained} processes in all (--nproc x --nnodes)"
        raise ConfigError(f"{run_dir.name} was trained in {trained} process{'es' * (trained > 1)}, not {asked}: "
                          f"resume it with {how}")


def _common_args(overrides: list[str] | None, runs_dir: Path | None, json_out: bool, quiet: bool) -> list[str]:
    """The options a command passes on to itself under torchrun."""
    args = []
    for override in overrides or []:
        args += ["--set", override]
    if runs_dir is not None:
        args += ["--runs-dir", str(runs_dir)]
    return args + ["--json"] * json_out + ["--quiet"] * quiet


def _launch_torchrun(nproc: int, nodes: Nodes, args: list[str]) -> None:
    """Re-run this command (`args` after the program name) under torchrun with `nproc` processes on this machine
    (its part of a job across `nodes`) and exit with its status."""
    import subprocess

    from engine.distributed import torchrun_command
    from engine.processes import child_env

    command = torchrun_command(nproc, nodes, ["console.cli", *args])
    where = f" on node {nodes.rank} of {nodes.count} (meeting at {nodes.endpoint})" if nodes.count > 1 else ""
    err_console.print(f"launching {nproc} process{'es' * (nproc > 1)}{where}: {' '.join(command[2:])}",
                      highlight=False, soft_wrap=True)
    raise typer.Exit(subprocess.run(command, env=child_env()).returncode)


def _check_gpus(device: str, nproc: int) -> None:
    """DDP on CUDA takes one GPU per process."""
    import torch

    from engine.errors import ConfigError

    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if wants_cuda and nproc > torch.cuda.device_count():
        raise ConfigError(f"--nproc {nproc} on CUDA needs {nproc} GPUs; this machine has "
                          f"{torch.cuda.device_count()} (use --set train.device=cpu for gloo on the CPU)")
