"""One run across two machines, played on localhost: two real `train --nnodes 2` commands (node ranks 1 and 0)
meet at a rendezvous endpoint, each starts torchrun with one gloo process on the CPU, and global rank 0 (on node 0)
alone writes the one run folder, shaped like a single-process run's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from console.cli import app
from engine.runs import list_runs

REPO = Path(__file__).resolve().parents[1]
QUICK = ["--set", "train.device=cpu", "--set", "train.epochs=1", "--set", "data.limit=300"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_node(rank: int, endpoint: str, runs: Path) -> subprocess.Popen[str]:
    """`imgcls-console train quickstart` as machine `rank` of 2 would run it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "console.cli", "train", "quickstart", "--nproc", "1", "--nnodes", "2",
               "--node-rank", str(rank), "--rdzv-endpoint", endpoint, "--runs-dir", str(runs), "--json", "--quiet",
               *QUICK]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _shape(run_dir: Path) -> tuple[set[str], list[str]]:
    """A run folder's files (relative paths) and the types of its events, in order."""
    files = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    events = [json.loads(line)["type"] for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return files, events


def test_one_run_across_two_nodes_writes_one_run_folder_on_node_0(isolated_dirs: Path) -> None:
    runs = isolated_dirs / "multi-runs"
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [_start_node(1, endpoint, runs), _start_node(0, endpoint, runs)]  # node 1 first: it waits for node 0
    outputs = [node.communicate(timeout=240) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    (node1_out, node1_err), (node0_out, _) = outputs
    assert node1_out == ""  # only global rank 0 reports, and it is on node 0
    assert "on node 1 of 2" in node1_err and "--rdzv-backend=static" in node1_err
    summary = json.loads(node0_out)
    assert summary["state"] == "finished" and summary["epochs"] == 1
    run_dir = Path(summary["run_dir"])
    assert [run.path for run in list_runs(runs)] == [run_dir]  # one folder for the job, written by node 0
    meta = json.loads((run_dir / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["world_size"] == 2

    single = CliRunner().invoke(app, ["train", "quickstart", "--json", "--quiet", *QUICK], catch_exceptions=False)
    assert single.exit_code == 0, single.output
    alone = json.loads(single.stdout)
    assert set(alone) == set(summary)
    assert _shape(run_dir) == _shape(Path(alone["run_dir"]))  # same files, same events (none twice from rank 1)


@pytest.mark.parametrize(("args", "says"), [
    (["--nnodes", "2"], "--nnodes 2 needs --rdzv-endpoint HOST:PORT"),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "node0:29500"], "--node-rank 2: expected 0 to 1"),
    (["--nnodes", "2", "--rdzv-endpoint", "node0"], "--rdzv-endpoint 'node0': expected HOST:PORT"),
    (["--node-rank", "1"], "--node-rank 1 is for a run across machines; add --nnodes N"),
    (["--rdzv-endpoint", "node0:29500"], "--rdzv-endpoint node0:29500 is for a run across machines"),
])
def test_inconsistent_multinode_options_are_one_line_errors(isolated_dirs: Path, args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["train", "quickstart", *args], catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0]
    assert list_runs(isolated_dirs / "runs") == []


def test_submit_runs_one_job_across_two_nodes_through_submitit(isolated_dirs: Path) -> None:
    """`submit EXP --nodes 2` through submitit's local executor: one job of two tasks, each standing for a node,
    each starting torchrun for its node rank; node 0's summary comes back, and one run folder holds the run."""
    pytest.importorskip("submitit")
    runs = isolated_dirs / "submit-runs"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    (isolated_dirs / "presets").mkdir()  # a user's own folder named presets/ where they work shadows nothing
    command = ["imgcls-console", "submit", "quickstart", "--nodes", "2", "--nproc", "1",
               "--cluster", "local", "--wait", "--rdzv-port", str(_free_port()), "--runs-dir", str(runs), "--json",
               *QUICK]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=isolated_dirs, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "submitted job" in result.stderr and "on 2 nodes x 1 process" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "finished" and summary["epochs"] == 1
    run_dir = Path(summary["run_dir"])
    assert [run.path for run in list_runs(runs)] == [run_dir]
    meta = json.loads((run_dir / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["world_size"] == 2  # one process on each of the two "nodes"
    assert (runs / "jobs").is_dir() and (runs / "jobs").stat().st_mode & 0o077 == 0  # submitit's files, private


def test_submit_checks_the_experiment_and_its_options_before_submitting(isolated_dirs: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(app, ["submit", "quickstart", "--cluster", "local", "--wait", "--set", "optim.lrr=1"])
    assert bad.exit_code == 2 and "optim.lrr" in bad.stderr and bad.stderr.count("\n") <= 2, bad.stderr
    no_wait = runner.invoke(app, ["submit", "quickstart", "--cluster", "local"])
    assert no_wait.exit_code == 2 and "--cluster local needs --wait" in no_wait.stderr
    assert not (isolated_dirs / "runs").exists()  # nothing submitted, no jobs folder
