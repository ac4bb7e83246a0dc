"""Resources run out politely (issue 10, item 9): a really full disk (a small tmpfs) while a checkpoint is saved
is one line saying so, the previous checkpoints stay intact, and the run resumes once there is space."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import checkpoint as ckpt
from tests.reliability.cli import invoke


def _mount(folder: Path, size_kb: int, *, remount: bool = False) -> bool:
    options = f"{'remount,' if remount else ''}size={size_kb}k"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def small_disk(isolated_dirs: Path) -> Iterator[Path]:
    """A real, small filesystem (tmpfs) for this test; skipped where this process may not mount one."""
    folder = isolated_dirs / "small-disk"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or not _mount(folder, 4096):
        pytest.skip("a real full disk needs a small tmpfs, and mounting one needs root (CAP_SYS_ADMIN)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _used_kb(folder: Path) -> int:
    stat = os.statvfs(folder)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize // 1024


def test_a_full_disk_while_saving_is_one_line_and_the_run_resumes_later(trained_template: Path,
                                                                         small_disk: Path) -> None:
    run_dir = small_disk / trained_template.name
    shutil.copytree(trained_template, run_dir, ignore=shutil.ignore_patterns(".lock", "epoch-*"))
    before = ckpt.load_checkpoint(run_dir / "checkpoints" / "last")
    # room for the events and status of another epoch, not for one more checkpoint (about 200 KiB)
    assert _mount(small_disk, _used_kb(small_disk) + 96, remount=True)
    result = invoke("resume", str(run_dir), "--set", "train.epochs=3", "--set", "train.checkpoint.every=0",
                    "--quiet")
    assert result.exit_code == 2, result.output
    (line,) = [text for text in result.output.splitlines() if text.startswith("error:")]
    assert "no space left on the device to save checkpoint" in line and " free, about " in line, line
    assert "last (epoch 2) is intact" in line and "resumed once there is space" in line
    assert "unexpected pos" not in line and "SafetensorError" not in line
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "no space left on the device" in status["reason"]
    after = ckpt.load_checkpoint(run_dir / "checkpoints" / "last")  # complete and verified
    assert after.meta["sha256"] == before.meta["sha256"] and after.meta["epoch"] == 2
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".tmp-")]

    assert _mount(small_disk, 8192, remount=True)  # space freed: the run resumes from where it was
    resumed = invoke("resume", str(run_dir), "--set", "train.epochs=3", "--set", "train.checkpoint.every=0",
                     "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert ckpt.load_checkpoint(run_dir / "checkpoints" / "last").meta["epoch"] == 3


# ---------------------------------------------------------------- item 10: out of memory, everywhere


def _out_of_memory(*_args: Any, **_kwargs: Any) -> Any:
    import torch

    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 139.8 GiB total)")


def test_out_of_memory_in_eval_ensemble_and_predict_is_one_line(trained_run: Path, isolated_dirs: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    images = isolated_dirs / "images"
    images.mkdir()
    for index in range(3):
        Image.new("L", (8, 8), 40 * index).save(images / f"{index}.png")
    monkeypatch.setattr("engine.evaluate.predict_views", _out_of_memory)
    name = trained_run.name
    for args in (["eval", f"{name}:best", "--split", "val"],
                 ["ensemble", f"{name}:epoch-001", f"{name}:epoch-002", "--split", "val"],
                 ["predict", f"{name}:best", "--images", str(images), "--out", str(isolated_dirs / "p.csv")]):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        (line,) = [text for text in result.output.splitlines() if text.startswith("error:")]
        assert "out of memory on the GPU" in line and "at batch size 512" in line, line
        assert "--set train.eval_batch_size=256" in line and "--device cpu" in line, line


def test_out_of_memory_in_lr_find_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.lr_find.autocast", _out_of_memory)
    result = invoke("lr-find", "quickstart")
    assert result.exit_code == 2, result.output
    (line,) = [text for text in result.output.splitlines() if text.startswith("error:")]
    assert "out of memory on the GPU in the LR range test at batch size 32" in line
    assert "--set train.batch_size=16" in line


# ---------------------------------------------------------------- item 11: decompression bombs


def test_an_image_of_absurd_pixel_count_is_named_and_never_decoded(isolated_dirs: Path) -> None:
    from PIL import Image

    root = isolated_dirs / "images"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for index in range(6):
            Image.new("L", (8, 8), 20 * index + (100 if label == "b" else 0)).save(root / label / f"{index}.png")
    bomb = root / "a" / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)  # a few KB on disk, 144 M pixels decoded
    assert bomb.stat().st_size < 100_000
    overrides = ["--set", "data.source=folder", "--set", f"data.root={root}", "--set", "data.image_size=8",
                 "--set", "train.epochs=1", "--quiet"]
    result = invoke("train", "quickstart", *overrides)
    assert result.exit_code == 2, result.output
    (line,) = [text for text in result.output.splitlines() if text.startswith("error:")]
    assert str(bomb) in line and "12000x12000" in line and "data.max_image_pixels" in line, line
    assert not (isolated_dirs / "runs").exists() or not list((isolated_dirs / "runs").iterdir())
    skipped = invoke("train", "quickstart", *overrides, "--set", "data.on_bad_image=skip", "--json")
    assert skipped.exit_code == 0, skipped.output


def test_out_of_memory_in_training_setup_and_the_test_pass_is_one_line(isolated_dirs: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA OOM while building the run (table, model) or in the final test pass: one line with the batch size."""
    import torch

    import engine.train as train_module
    from engine.errors import EngineError
    from engine.presets import resolve_experiment
    from engine.runner import start_run
    from engine.runs import list_runs

    def no_memory(*args: object, **kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    config = resolve_experiment("quickstart", ["train.epochs=1"])
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "build_parts", no_memory)
        with pytest.raises(EngineError) as caught:
            start_run(config, isolated_dirs / "runs")
    message = str(caught.value)
    assert "out of memory on the GPU setting up the run" in message and "train.batch_size=16" in message
    assert "\n" not in message
    monkeypatch.setattr(train_module.ckpt, "load_checkpoint", no_memory)  # the test pass loads `best`
    with pytest.raises(EngineError) as caught:
        start_run(config, isolated_dirs / "runs")
    assert "testing the best checkpoint at batch size 512" in str(caught.value)
    failed = [r for r in list_runs(isolated_dirs / "runs") if r.state == "failed"]
    assert len(failed) == 1 and "train.eval_batch_size=256" in failed[0].status["reason"]
