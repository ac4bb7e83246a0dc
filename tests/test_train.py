"""The training loop: exact resume, signals, divergence, incompatible resume, checkpoint policy, early stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine import checkpoint as ckpt
from engine.errors import CheckpointError
from engine.presets import resolve_experiment
from engine.runs import read_status
from engine.runtime import StopRequest
from engine.runner import resume_run, start_run

REPO = Path(__file__).resolve().parents[1]
FAST = ["train.epochs=4", "train.deterministic=true", "data.limit=600", "train.log_every=5"]


def _weights(run_dir: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(run_dir / "checkpoints" / name).weights


@pytest.mark.parametrize("extra", [[], ["optim.accumulate=2", "train.ema_decay=0.9"]])
def test_resume_mid_run_matches_uninterrupted(tmp_path: Path, extra: list[str]) -> None:
    random_ops = "augment.ops=[{op: translate, fraction: 0.25, p: 0.7}, {op: erase, p: 0.5}]"
    config = resolve_experiment("quickstart", [*FAST, random_ops, "model.dropout=0.3", *extra])
    full = start_run(config, tmp_path / "a")
    stop = StopRequest()

    def stop_after_epoch_two(event: dict) -> None:
        if event["type"] == "epoch" and event["epoch"] == 2:
            stop.count = 1  # as a first Ctrl-C would: the next step finishes, then the run saves and stops

    cut = start_run(config, tmp_path / "b", listeners=[stop_after_epoch_two], stop=stop)
    assert cut["state"] == "interrupted"
    meta = json.loads((Path(cut["run_dir"]) / "checkpoints/last/meta.json").read_text())
    assert meta["epoch"] == 2 and meta["step_in_epoch"] == config.optim.accumulate  # mid-epoch, between steps
    resumed = resume_run(Path(cut["run_dir"]))
    assert resumed["state"] == "finished"
    for key, value in _weights(Path(full["run_dir"])).items():
        assert torch.equal(value, _weights(Path(resumed["run_dir"]))[key]), key
    assert resumed["test_acc"] == full["test_acc"] and resumed["best_val_acc"] == full["best_val_acc"]


def test_resume_refuses_incompatible_change(tmp_path: Path) -> None:
    config = resolve_experiment("quickstart", ["train.epochs=1", "data.limit=300"])
    run = start_run(config, tmp_path)
    with pytest.raises(CheckpointError, match=r"model\.options"):
        resume_run(Path(run["run_dir"]), overrides=["train.epochs=2", "model.options.channels=[8, 16]"])
    with pytest.raises(CheckpointError, match="finetune"):
        resume_run(Path(run["run_dir"]), overrides=["optim.lr=0.3"])  # a new LR is a new run, not a resume
    with pytest.raises(CheckpointError, match="nothing to resume"):
        resume_run(Path(run["run_dir"]))
    assert "lr: 0.05" in (Path(run["run_dir"]) / "config.yaml").read_text()  # the record is untouched
    extended = resume_run(Path(run["run_dir"]), overrides=["train.epochs=2"])
    assert extended["state"] == "finished" and extended["epoch"] == 2
    with pytest.raises(CheckpointError, match="has trained 2 epochs: train.epochs=1 would end it before"):
        resume_run(Path(run["run_dir"]), overrides=["train.epochs=1"])


def test_nan_loss_stops_as_diverged_and_never_becomes_best(tmp_path: Path) -> None:
    config = resolve_experiment("quickstart", ["optim.lr=1e12", "train.epochs=3", "data.limit=300",
                                               "model.options.batch_norm=false", "train.log_every=1"])
    status = start_run(config, tmp_path)
    assert status["state"] == "diverged" and "epoch 1, step" in status["reason"]
    coarse = start_run(resolve_experiment("quickstart", ["optim.lr=1e12", "train.epochs=3", "data.limit=300",
                                                         "model.options.batch_norm=false", "train.log_every=7"]),
                       tmp_path)  # checked every 7 steps, the first bad step is still named exactly
    assert coarse["state"] == "diverged" and coarse["reason"] == status["reason"]
    for meta in ckpt.list_checkpoints(Path(status["run_dir"])):
        weights = ckpt.load_checkpoint(Path(status["run_dir"]) / "checkpoints" / meta["name"]).weights
        assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())


def test_periodic_checkpoints_keep_newest(tmp_path: Path) -> None:
    config = resolve_experiment("quickstart", ["train.epochs=5", "data.limit=300", "train.checkpoint.every=1",
                                               "train.checkpoint.keep=2"])
    run_dir = Path(start_run(config, tmp_path)["run_dir"])
    names = [m["name"] for m in ckpt.list_checkpoints(run_dir)]
    assert "epoch-004" in names and "epoch-005" in names and "epoch-003" not in names
    assert "best" in names and "last" in names


def test_early_stopping(tmp_path: Path) -> None:
    config = resolve_experiment("quickstart", ["train.epochs=30", "data.limit=300", "optim.lr=0.000001",
                                               "schedule.name=constant", "train.early_stop.metric=val_acc",
                                               "train.early_stop.mode=max", "train.early_stop.patience=2",
                                               "train.early_stop.min_delta=0.5"])
    status = start_run(config, tmp_path)
    assert status["state"] == "finished" and status["reason"] == "early_stop" and status["epoch"] == 3


def test_out_of_memory_names_the_batch_size_and_what_to_try(tmp_path: Path) -> None:
    from torch import nn

    from engine.errors import EngineError
    from engine.models import registry

    class RunsOutOfMemory(nn.Module):
        """Raises what the CUDA allocator raises once a batch is too large (no GPU here to exhaust)."""

        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self.head = nn.Linear(1, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    @registry.register_model("oom-probe")
    def oom_probe(num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0) -> nn.Module:
        return RunsOutOfMemory(num_classes)

    try:
        config = resolve_experiment("quickstart", ["model.name=oom-probe", "model.options={}", "data.limit=300"])
        with pytest.raises(EngineError, match=r"out of memory at batch size 32.*train\.batch_size=16"):
            start_run(config, tmp_path)
        status = read_status(next(p for p in tmp_path.iterdir() if p.name.startswith("quickstart-")))
        assert status["state"] == "failed" and "out of memory" in status["reason"]
    finally:
        registry._BUILDERS.pop("oom-probe", None)


@pytest.mark.parametrize(("signal_number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_and_exits(tmp_path: Path, signal_number: int, exit_code: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "console.cli", "train", "quickstart",
                             "--set", "train.epochs=100000", "--runs-dir", str(tmp_path / "runs")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # wait for the event itself: the first epoch line (training is under way)
        seen.append(line)
        if line.startswith("epoch "):
            break
    else:
        raise AssertionError(f"no epoch was reported: {''.join(seen)}")
    proc.send_signal(signal_number)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == exit_code, err
    (run_dir,) = (tmp_path / "runs").iterdir()
    status = read_status(run_dir)
    assert status["state"] == "interrupted"
    ckpt.load_checkpoint(run_dir / "checkpoints" / "last")  # complete and verified


SAVER = """
import sys, torch
from pathlib import Path
from engine.checkpoint import save_checkpoint
root = Path(sys.argv[1])
epoch = 0
while True:
    epoch += 1
    save_checkpoint(root, "last", weights={"w": torch.full((512, 1024), float(epoch))}, config_text="x",
                    meta={"epoch": epoch}, state={"epoch": epoch})
    print(epoch, flush=True)
"""

KILLED_AT = """
import os, shutil, signal, sys, torch
from pathlib import Path
from engine import checkpoint as ckpt

def save(epoch):
    ckpt.save_checkpoint(Path(sys.argv[1]), "last", weights={"w": torch.full((512, 1024), float(epoch))},
                         config_text="x", meta={"epoch": epoch}, state={"epoch": epoch})

def killing(real):
    def call(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    return call

save(1)
phase = sys.argv[2]
if phase == "weights":      # weights of epoch 2 written, nothing else
    ckpt.save_file = killing(ckpt.save_file)
elif phase == "state":      # state.pt written, no meta yet
    torch.save = killing(torch.save)
elif phase == "meta":       # every file written and synced, not yet renamed in
    ckpt._fsync_dir = killing(ckpt._fsync_dir)
elif phase == "old-moved":  # last -> .old-last done, the new folder not yet renamed in
    os.replace = killing(os.replace)
elif phase == "renamed":    # the new folder renamed in, .old-last not yet removed
    shutil.rmtree = killing(shutil.rmtree)
save(2)
"""


@pytest.mark.parametrize(("phase", "epoch"), [("weights", 1), ("state", 1), ("meta", 1), ("old-moved", 1),
                                              ("renamed", 2)])
def test_kill_during_save_leaves_a_complete_checkpoint(tmp_path: Path, phase: str, epoch: int) -> None:
    """SIGKILL at each step of a save (not at a guessed moment): the checkpoint read afterwards is complete,
    verified and of one epoch throughout (weights, state and meta agree)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", KILLED_AT, str(tmp_path / "ck"), phase], env=env)
    assert killed.returncode == -signal.SIGKILL
    loaded = ckpt.load_checkpoint(ckpt.readable_folder(tmp_path / "ck", "last"))
    assert loaded.meta["epoch"] == epoch and loaded.state["epoch"] == epoch
    assert torch.equal(loaded.weights["w"], torch.full((512, 1024), float(epoch)))


def test_corrupt_checkpoint_is_detected(tmp_path: Path) -> None:
    folder = ckpt.save_checkpoint(tmp_path, "x", weights={"w": torch.ones(3)}, config_text="", meta={"epoch": 1})
    data = bytearray((folder / ckpt.WEIGHTS).read_bytes())
    data[-1] ^= 0xFF
    (folder / ckpt.WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        ckpt.load_checkpoint(folder)


def test_listing_checkpoints_never_races_a_save(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path / "run" / "checkpoints")], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    deadline = time.time() + 3
    try:
        while time.time() < deadline:  # a viewer polling as fast as it can while the trainer saves
            for meta in ckpt.list_checkpoints(tmp_path / "run"):
                assert meta["name"] == "last"
            ckpt.load_checkpoint(ckpt.checkpoint_dir(tmp_path / "run", "last"), with_state=False, verify=False)
        assert proc.poll() is None, "the saver died"
    finally:
        proc.kill()
        proc.wait()


def test_resume_refuses_a_run_that_is_still_training(tmp_path: Path) -> None:
    from engine.errors import RunError
    from engine.runs import write_status

    run_dir = Path(start_run(resolve_experiment("quickstart", ["train.epochs=1", "data.limit=200"]),
                             tmp_path)["run_dir"])
    status = read_status(run_dir)
    write_status(run_dir, {**status, "state": "running", "pid": os.getpid()})
    with pytest.raises(RunError, match="still training"):
        resume_run(run_dir, overrides=["train.epochs=2"])


def test_a_failed_resume_leaves_the_run_as_it_was(tmp_path: Path) -> None:
    from PIL import Image

    from engine.errors import DataError

    for name in ("a", "b"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (8, 8), 40 * i + (100 if name == "b" else 0)).save(tmp_path / "imgs" / name / f"{i}.png")
    config = resolve_experiment("quickstart", ["data.source=folder", f"data.root={tmp_path / 'imgs'}",
                                               "data.image_size=8", "train.epochs=1", "train.batch_size=4"])
    run_dir = Path(start_run(config, tmp_path / "runs")["run_dir"])
    before = (read_status(run_dir), (run_dir / "config.yaml").read_text())
    (tmp_path / "imgs").rename(tmp_path / "moved")
    with pytest.raises(DataError):
        resume_run(run_dir, overrides=["train.epochs=3"])
    after = read_status(run_dir)
    assert after["state"] == before[0]["state"] == "finished" and after["epoch"] == 1
    assert (run_dir / "config.yaml").read_text() == before[1]


def test_pretrained_weights_are_kept_by_a_data_initialised_model(tmp_path: Path) -> None:
    """The speedrun net whitens its first conv from the training data unless its weights come from a file."""
    small = ["model=speedrun", "model.options.widths=[8,8,8]", "data.image_size=12", "data.limit=200",
             "train.epochs=1", "augment=none"]
    first = start_run(resolve_experiment("quickstart", small), tmp_path / "a")
    weights = Path(first["run_dir"]) / "checkpoints/last/weights.safetensors"
    second = start_run(resolve_experiment("quickstart", [*small, f"model.pretrained={weights}",
                                                         "optim.lr=1e-9", "data.split_seed=3"]), tmp_path / "b")
    from safetensors.torch import load_file

    loaded, kept = load_file(str(weights)), _weights(Path(second["run_dir"]))
    assert torch.allclose(loaded["whiten.weight"], kept["whiten.weight"])


def test_skipped_images_are_counted_in_the_run_events(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    for label in ("ant", "bee"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 20 * i + 100 * (label == "bee"), dtype=np.uint8)).save(
                tmp_path / "imgs" / label / f"{i}.png")
    (tmp_path / "imgs" / "bee" / "broken.png").write_bytes(b"not a png")
    overrides = ["data=folder-40px", f"data.root={tmp_path / 'imgs'}", "data.image_size=8", "data.channels=1",
                 "data.on_bad_image=skip", "train.epochs=1", "augment=none", "model=mnist-logreg"]
    status = start_run(resolve_experiment("quickstart", overrides), tmp_path / "runs")
    events = [json.loads(line) for line in (Path(status["run_dir"]) / "events.jsonl").read_text().splitlines()]
    ready = next(e for e in events if e["type"] == "data_ready")
    warning = next(e for e in events if e["type"] == "warning" and "skipped" in e["message"])
    assert ready["info"]["skipped"] == 1 and warning["skipped_files"] == [str(tmp_path / "imgs/bee/broken.png")]


def test_a_torchvision_weights_name_never_reads_a_stray_meta_file(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text('{"classes": ["x"]}')  # the working directory of the test
    from engine.errors import ModelError

    config = resolve_experiment("quickstart", ["model=resnet18-small", "model.pretrained=IMAGENET1K_V1",
                                               "data.image_size=32", "data.limit=100", "train.epochs=1"])
    with pytest.raises(ModelError, match="downloads are off .*put resnet18-"):  # never "meta.json: …"
        start_run(config, tmp_path / "runs")


def test_a_failing_viewer_never_stops_the_run(tmp_path: Path) -> None:
    def closed_terminal(event: dict) -> None:
        if event["type"] == "epoch":
            raise BrokenPipeError(32, "Broken pipe")

    status = start_run(resolve_experiment("quickstart", ["train.epochs=2", "data.limit=200"]), tmp_path,
                       listeners=[closed_terminal])
    assert status["state"] == "finished" and read_status(Path(status["run_dir"]))["state"] == "finished"
    events = (Path(status["run_dir"]) / "events.jsonl").read_text()
    assert "a viewer failed on a epoch event" in events and events.count('"type": "epoch"') == 2


def test_checkpoint_weights_are_as_readable_as_the_runs_other_files(tmp_path: Path) -> None:
    """safetensors writes owner-only files; on a shared runs folder the weights must be readable as the run's
    config is (the umask decides both)."""
    old = os.umask(0o022)
    try:
        folder = ckpt.save_checkpoint(tmp_path, "x", weights={"w": torch.ones(3)}, config_text="", meta={"epoch": 1},
                                      ema={"w": torch.ones(3)})
    finally:
        os.umask(old)
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert modes[ckpt.WEIGHTS] == modes[ckpt.EMA] == modes[ckpt.CONFIG] == 0o644, modes


def test_a_damaged_best_checkpoint_at_the_test_pass_leaves_the_run_finished(tmp_path: Path) -> None:
    """The best checkpoint damaged on disk (here: right after the last epoch's save) when the run scores the test
    split: the run ends finished, tested on its final weights, and says so (it failed, and a resume could not
    get past it: every epoch trained, nothing to resume)."""
    def damage_best(event: dict) -> None:
        if event["type"] == "checkpoint" and event["name"] == "last" and event["epoch"] == 2:
            weights = tmp_path / "runs" / Path(event["path"]).parent.parent.name / "checkpoints/best" / ckpt.WEIGHTS
            weights.write_bytes(weights.read_bytes()[:1000])

    status = start_run(resolve_experiment("quickstart", ["train.epochs=2", "data.limit=300"]), tmp_path / "runs",
                       listeners=[damage_best])
    assert status["state"] == "finished" and status["test_checkpoint"] == "final"
    events = [json.loads(line) for line in (Path(status["run_dir"]) / "events.jsonl").read_text().splitlines()]
    warned = [e["message"] for e in events if e["type"] == "warning"]
    assert any("best" in w and "scored with the final weights instead" in w for w in warned), warned
