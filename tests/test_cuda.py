"""CUDA paths (AMP, GradScaler, channels_last, compile, EMA, host-resident table, resume). Skipped without a GPU;
run on a GPU machine with `python -m pytest tests/test_cuda.py`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine import checkpoint as ckpt
from engine.presets import resolve_experiment
from engine.runtime import StopRequest
from engine.runner import resume_run, start_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
BASE = ["train.device=cuda", "train.epochs=4", "data.limit=800",
        "augment.ops=[{op: hflip, p: 0.5}, {op: translate, fraction: 0.125}, {op: erase, p: 0.3}]"]


@pytest.mark.parametrize("extra", [
    ["train.precision=fp16", "train.ema_decay=0.99"],
    ["train.precision=bf16", "train.compile=true"],
    ["train.precision=bf16", "data.device_budget_gb=0", "optim.accumulate=2", "optim.grad_clip=1.0"],
    ["train.precision=bf16", "augment.mixup_alpha=0.2", "augment.cutmix_alpha=1.0", "train.label_smoothing=0.1"],
])
def test_cuda_training_variants(tmp_path: Path, extra: list[str]) -> None:
    status = start_run(resolve_experiment("quickstart", [*BASE, "train.epochs=8", *extra]), tmp_path)
    floor = 0.8 if any("mixup" in e for e in extra) else 0.9  # mixup + cutmix on 800 tiny images learns slower
    assert status["state"] == "finished" and status["test_acc"] >= floor, status
    assert status["device"].startswith("cuda")


def test_cuda_mid_epoch_resume_matches(tmp_path: Path) -> None:
    config = resolve_experiment("quickstart", [*BASE, "train.deterministic=true", "train.precision=fp32"])
    full = start_run(config, tmp_path / "a")
    stop = StopRequest()

    def stop_in_epoch_three(event: dict) -> None:
        if event["type"] == "epoch" and event["epoch"] == 2:
            stop.count = 1

    cut = start_run(config, tmp_path / "b", listeners=[stop_in_epoch_three], stop=stop)
    resumed = resume_run(Path(cut["run_dir"]))
    a = ckpt.load_checkpoint(Path(full["run_dir"]) / "checkpoints" / "last").weights
    b = ckpt.load_checkpoint(Path(resumed["run_dir"]) / "checkpoints" / "last").weights
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-5), key
