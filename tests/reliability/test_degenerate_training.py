"""Training that cannot mean anything is never passed off as a result (issue 10, items 16 and 18): an epoch
with NaN validation metrics is never `best`, a member with NaN outputs is refused by an ensemble and warned
about by eval, and a data set of a single class is refused."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from engine import checkpoint as ckpt
from engine.presets import resolve_experiment
from engine.runner import start_run
from tests.reliability.cli import invoke


def nan_batch_norm_weights(source: Path, target: Path) -> Path:
    """Real weights whose first batch-norm layer has NaN running variances: in training mode (batch statistics)
    the model learns normally, in eval mode every output is NaN, so val_loss is NaN beside a finite val_acc."""
    weights = load_file(str(source))
    key = next(k for k in sorted(weights) if k.endswith("running_var"))
    weights[key] = torch.full_like(weights[key], float("nan"))
    save_file(weights, str(target))
    return target


def test_an_epoch_with_nan_validation_is_never_best_nor_ensembled(trained_run: Path, isolated_dirs: Path) -> None:
    pretrained = nan_batch_norm_weights(trained_run / "checkpoints" / "best" / ckpt.WEIGHTS,
                                        isolated_dirs / "nan-bn.safetensors")
    status = start_run(resolve_experiment("quickstart", [
        "train.epochs=1", f"model.pretrained={pretrained}", "train.checkpoint.best_metric=val_acc",
        "train.checkpoint.best_mode=max", "name=nanval"]), isolated_dirs / "runs")
    run_dir = Path(status["run_dir"])
    assert status["final"]["val_loss"] != status["final"]["val_loss"]  # NaN: the premise of the test
    assert [m["name"] for m in ckpt.list_checkpoints(run_dir)] == ["last"]  # no `best` from a NaN epoch
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e["type"] == "warning" and "cannot be `best`" in e["message"] for e in events)

    refused = invoke("ensemble", f"{run_dir.name}:last", f"{trained_run.name}:best", "--split", "val")
    assert refused.exit_code == 2 and f"{run_dir.name}:last gives NaN/Inf outputs" in refused.output
    warned = invoke("eval", f"{run_dir.name}:last", "--split", "val")
    assert warned.exit_code == 0, warned.output
    assert any(line.startswith("warning:") and "NaN/Inf outputs" in line for line in warned.output.splitlines())


def test_a_single_class_data_set_is_refused(isolated_dirs: Path) -> None:
    folder = isolated_dirs / "images" / "only"
    folder.mkdir(parents=True)
    for index in range(12):
        Image.new("L", (8, 8), 20 * index).save(folder / f"{index}.png")
    result = invoke("train", "quickstart", "--set", "data.source=folder", "--set",
                    f"data.root={folder.parent}", "--set", "data.image_size=8", "--quiet")
    assert result.exit_code == 2, result.output
    assert "has 1 class (`only`)" in result.output and "at least two" in result.output
    assert not (isolated_dirs / "runs").exists() or not list((isolated_dirs / "runs").iterdir())
