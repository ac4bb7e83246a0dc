"""One training run across several machines, submitted to Slurm through submitit.

`imgcls-console submit EXP --nodes 2 --nproc 4` submits one job of 2 nodes with one task each; every task runs
`node_task`, which starts torchrun on its node with the job's node count, its own node rank and the first node as
the rendezvous endpoint (static rendezvous: global rank 0, which writes the run folder, is on node 0). The run
folder is the runs folder's, so it must be on a file system the nodes share, as for any Slurm job.
`--cluster local` runs the same job on this machine, each task standing for one node (submitit's local executor
has a single node), to try a submission before the cluster sees it.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.distributed import Nodes, torchrun_command
from engine.errors import ConfigError, EngineError
from engine.processes import child_env, slurm_executor

JOBS_FOLDER = "jobs"  # <runs>/jobs/: submitit's job files and logs (private: it keeps pickles there)
PORT_BASE, PORT_SPAN = 20000, 20000  # the rendezvous port a job derives from its id when none is given


@dataclass(frozen=True)
class RunJob:
    """How the run is submitted: machines, processes per machine, Slurm partition and time limit, cluster kind."""

    nodes: int = 2
    nproc: int = 1
    partition: str | None = None
    time_minutes: int = 240
    cluster: str = "slurm"
    port: int | None = None  # the rendezvous port on node 0; None: derived from the job id


def job_port(job_id: str) -> int:
    """A rendezvous port every task of one job derives alike from the job id (so no task must tell the others)."""
    return PORT_BASE + int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") % PORT_SPAN


def train_args(experiment: str, overrides: list[str], runs_root: Path, name: str | None) -> list[str]:
    """The `console.cli train` arguments each node runs under torchrun (the summary as JSON on node 0)."""
    args = ["console.cli", "train", experiment, "--runs-dir", str(runs_root), "--json", "--quiet"]
    for override in overrides:
        args += ["--set", override]
    return args + (["--name", name] if name else [])


def node_task(job: RunJob, args: list[str]) -> dict[str, Any] | None:
    """What each task of the job runs: torchrun for this node. Node 0 returns the run's JSON summary; a node
    whose torchrun fails raises with its last lines of output (submitit reports them)."""
    import submitit

    env = submitit.JobEnvironment()
    one_machine = env.num_nodes == 1  # the local executor (or a one-node job): every task on this host
    host = "127.0.0.1" if one_machine else env.hostnames[0]
    port = job.port or job_port(str(env.raw_job_id))
    nodes = Nodes(env.num_tasks, env.global_rank, f"{host}:{port}") if env.num_tasks > 1 else Nodes()
    result = subprocess.run(torchrun_command(job.nproc, nodes, args), capture_output=True, text=True,
                            env=child_env())
    if result.returncode != 0:
        raise EngineError(f"node {nodes.rank} of {nodes.count}: {_why(result)}")
    if nodes.rank != 0:
        return None
    start = result.stdout.find("{")  # `train --json` prints one JSON document (indented) on rank 0
    return json.JSONDecoder().raw_decode(result.stdout[start:])[0] if start >= 0 else None


def _why(result: subprocess.CompletedProcess[str]) -> str:
    """The training's own one-line error (`error: ...`) from a failed torchrun's output, else its last lines."""
    lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("error:")]
    if said:
        return said[-1].removeprefix("error:").strip()
    return f"torchrun exited with {result.returncode}: " + " | ".join(lines[-3:])


def submit_run(experiment: str, overrides: list[str], runs_root: Path, job: RunJob, name: str | None = None
               ) -> tuple[Any, Path]:
    """Submit the run as one job of `job.nodes` tasks (one per node); the submitit job and its log folder."""
    try:
        import submitit
    except ImportError:
        raise ConfigError("submitting to Slurm needs submitit: pip install 'imgcls-console[slurm]'") from None
    if job.nodes < 1 or job.nproc < 1:
        raise ConfigError(f"--nodes {job.nodes} --nproc {job.nproc}: expected 1 or more of each")
    folder = Path(runs_root) / JOBS_FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    executor = slurm_executor(submitit, folder, job.cluster)
    parameters: dict[str, Any] = {"name": f"train-{name or experiment}", "timeout_min": job.time_minutes}
    if job.cluster == "local":  # one machine: each task stands for a node
        parameters.update(nodes=1, tasks_per_node=job.nodes, gpus_per_node=0)
    else:
        parameters.update(nodes=job.nodes, tasks_per_node=1, gpus_per_node=job.nproc)
        if job.partition:
            parameters["slurm_partition"] = job.partition
    executor.update_parameters(**parameters)
    submitted = executor.submit(node_task, job, train_args(experiment, overrides, Path(runs_root), name))
    return submitted, folder


def job_summary(submitted: Any) -> dict[str, Any] | None:
    """The run's summary once the job ended (node 0's), raising the job's failure as one EngineError line."""
    try:
        results = submitted.results()  # one per task
    except Exception as exc:  # noqa: BLE001 - submitit raises a task's failure with its traceback: its last line
        raised = re.findall(r"^[\w.]*(?:Error|Exception): (.+)$", str(exc), flags=re.MULTILINE)
        why = raised[-1] if raised else " ".join(str(exc).split())
        raise EngineError(f"job {submitted.job_id} failed: {why[:400]}") from None
    return next((r for r in results if r is not None), None)
