"""DDP through torchrun with 2 CPU processes (gloo): rank 0 owns the run folder; metrics match one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.launch import launch_resume
from engine.runs import list_runs

REPO = Path(__file__).resolve().parents[1]


def _train(tmp_path: Path, *extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "console.cli", "train", "quickstart", "--json", "--quiet",
                             "--runs-dir", str(tmp_path / "runs"), *extra],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    short = ("--set", "train.epochs=5")  # enough to tell a broken gradient average from a working one
    single = _train(tmp_path, "--set", "train.device=cpu", *short)
    ddp = _train(tmp_path, "--nproc", "2", "--set", "train.device=cpu", *short)  # gloo, also on a GPU machine
    assert ddp["state"] == "finished" and ddp["epochs"] == single["epochs"]
    assert ddp["test_acc"] >= 0.95 and abs(ddp["test_acc"] - single["test_acc"]) <= 0.03
    assert len(list_runs(tmp_path / "runs")) == 2  # one run folder per job, written by rank 0 only
    run_dir = Path(ddp["run_dir"])
    epochs = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()
              if json.loads(line)["type"] == "epoch"]
    assert len(epochs) == single["epochs"]  # no duplicate events from rank 1
    meta = json.loads((run_dir / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["world_size"] == 2


def test_batch_must_split_over_processes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "console.cli", "train", "quickstart", "--nproc", "2",
                             "--set", "train.batch_size=33", "--runs-dir", str(tmp_path / "runs")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "does not split evenly over 2 processes" in result.stderr


def test_ddp_with_a_frozen_backbone_for_the_first_epoch(tmp_path: Path) -> None:
    result = _train(tmp_path, "--nproc", "2", "--set", "train.device=cpu", "--set", "model.freeze_backbone_epochs=1",
                    "--set", "train.epochs=2", "--set", "data.limit=300")
    assert result["state"] == "finished" and result["epoch"] == 2


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "console.cli", *args, "--runs-dir", str(tmp_path / "runs")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_a_ddp_run_resumes_with_as_many_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run trained in 2 processes is refused a 1-process resume (one line saying how), and `resume --nproc 2`
    continues it under torchrun to its new length."""
    trained = _train(tmp_path, "--nproc", "2", "--set", "train.device=cpu", "--set", "train.epochs=2",
                     "--set", "data.limit=300")
    run = Path(trained["run_dir"]).name
    alone = _cli(tmp_path, "resume", run, "--set", "train.epochs=3", "--quiet")
    assert alone.returncode != 0
    assert alone.stderr.strip() == f"error: {run} was trained in 2 processes, not 1: resume it with --nproc 2"
    three = _cli(tmp_path, "resume", run, "--nproc", "3", "--set", "train.epochs=3", "--quiet")
    assert three.returncode == 2 and three.stderr.strip().endswith("not 3: resume it with --nproc 2"), three.stderr
    resumed = _cli(tmp_path, "resume", run, "--nproc", "2", "--set", "train.epochs=3", "--json", "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)
    assert summary["state"] == "finished" and summary["epoch"] == 3 and summary["run_dir"] == trained["run_dir"]
    assert "launching 2 processes" in resumed.stderr and "console.cli resume" in resumed.stderr


    # The console's resume (engine.launch, a child process in its own session) takes as many processes by itself.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    handle = launch_resume(Path(trained["run_dir"]), ["train.epochs=4"])
    assert "torch.distributed.run" in handle.command and "--nproc_per_node=2" in handle.command
    assert handle.wait(timeout=300) == 0, handle.failure()
    status = json.loads((Path(trained["run_dir"]) / "status.json").read_text())
    assert status["state"] == "finished" and status["epoch"] == 4
