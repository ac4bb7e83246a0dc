"""DDP through torchrun with 2 CPU processes (gloo): rank 0 owns the run folder; metrics match one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
