"""Every run keeps what made it: the code (version, git commit), Python, torch, torchvision, CUDA, the GPUs and
the host, in environment.json and as an event of each start."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch
import torchvision

from engine.events import read_events
from engine.provenance import describe_environment, read_environment
from engine.runs import RunFolder

REPO = Path(__file__).resolve().parents[2]


def test_a_run_records_the_environment_it_ran_in(trained_run: Path) -> None:
    folder = RunFolder(trained_run)
    env = read_environment(folder.environment)
    assert env is not None
    assert env["python"] == platform.python_version()
    assert env["torch"] == torch.__version__ and env["torchvision"] == torchvision.__version__
    assert env["gpu_count"] == torch.cuda.device_count() and env["device"] == "cpu"
    assert env["host"] and env["version"]
    if (REPO / ".git").exists():  # run from a checkout: the commit it ran
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        assert env["commit"] == head and isinstance(env["dirty"], bool)
    recorded = [e for e in read_events(folder.events, {"environment"})]
    assert len(recorded) == 1 and recorded[0]["env"] == env


def test_the_record_reads_back_for_people_and_missing_or_damaged_records_are_none(trained_run: Path) -> None:
    folder = RunFolder(trained_run)
    rows = dict(describe_environment(read_environment(folder.environment)))
    assert set(rows) == {"code", "python", "torch", "hardware", "host"}
    assert torch.__version__ in rows["torch"] and "no GPU on cpu" == rows["hardware"]
    folder.environment.write_bytes(b"\xff\xfe not json")
    assert read_environment(folder.environment) is None and describe_environment(None) == []
    folder.environment.unlink()
    assert read_environment(folder.environment) is None
