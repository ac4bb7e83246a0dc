"""`submit`: one training run across several machines, as a Slurm job through submitit."""

from __future__ import annotations

from typing import Annotated

import typer

from console.cli_train import NameOption
from console.common import (
    JsonOption, OverrideOption, RunsDirOption, err_console, escape, fmt_pct, print_json, reports_errors,
    slurm_minutes,
)


@reports_errors
def submit(
    experiment: Annotated[str, typer.Argument(metavar="EXPERIMENT", help="Experiment preset name or YAML file.")],
    nodes: Annotated[int, typer.Option("--nodes", "-N", min=1, help="Machines (Slurm nodes) training the run.")] = 2,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="Processes per machine (one per GPU).")] = 1,
    partition: Annotated[str | None, typer.Option("--partition", "-p", show_default=False,
                                                  help="Slurm partition.")] = None,
    time_limit: Annotated[str, typer.Option("--time-limit", metavar="DURATION",
                                            help="The job's Slurm time limit (90m, 4h, ...).")] = "4h",
    cluster: Annotated[str, typer.Option("--cluster", help="slurm, or local: the same job on this machine, each "
                                                           "task standing for a node (to try a submission).")] = "slurm",
    rdzv_port: Annotated[int | None, typer.Option("--rdzv-port", min=1, max=65535, show_default=False,
                                                  help="Port on the first node where the nodes meet (default: "
                                                       "derived from the job id).")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the run and print its summary.")] = False,
    overrides: OverrideOption = None,
    name: NameOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """Submit one run across several machines as a Slurm job (submitit), DDP on every node.

    EXPERIMENT trains on --nodes machines with --nproc processes each: one task per node, each starting torchrun
    with the first node as the meeting point. The runs folder must be on a file system the nodes share; node 0
    writes the run folder.
    """
    from engine.presets import resolve_experiment
    from engine.runs import runs_dir as pick_runs_dir
    from engine.slurm_run import RunJob, job_summary, submit_run

    minutes = slurm_minutes(time_limit, cluster, wait)
    resolve_experiment(experiment, overrides or [])  # a bad experiment or --set is said here, not in a job log
    root = pick_runs_dir(runs_dir)
    job = RunJob(nodes, nproc, partition, minutes, cluster, rdzv_port)
    submitted, folder = submit_run(experiment, overrides or [], root, job, name)
    err_console.print(f"submitted job {submitted.job_id}: {experiment} on {nodes} node{'s' * (nodes > 1)} x {nproc} "
                      f"process{'es' * (nproc > 1)}; its logs: {escape(str(folder))}", highlight=False)
    if not wait:
        return
    summary = job_summary(submitted)
    if json_out:
        print_json(summary)
    elif summary:
        err_console.print(f"run {escape(str(summary.get('run_dir')))}: {summary.get('state')}, best val acc "
                          f"{fmt_pct(summary.get('best_val_acc'))}, test acc {fmt_pct(summary.get('test_acc'))}",
                          highlight=False)
