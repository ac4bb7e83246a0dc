"""engine.preview: steps per epoch, the schedule preview, model size at the data's input, the data summary."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import torch

from engine.data import load_dataset
from engine.models import count_macs, count_params, create_model
from engine.presets import resolve_experiment
from engine.preview import (
    model_cost, model_input, model_preset_costs, schedule_preview, section_presets, steps_per_epoch,
    summarize_data,
)

REPO = Path(__file__).resolve().parents[1]


def test_steps_per_epoch_counts_batches_drop_last_and_accumulation() -> None:
    config = resolve_experiment("quickstart", ["train.batch_size=32"])
    assert steps_per_epoch(config, 100) == 3  # drop_last: 3 full batches
    assert steps_per_epoch(dataclasses.replace(config, train=dataclasses.replace(config.train, drop_last=False)),
                           100) == 4
    accumulating = resolve_experiment("quickstart", ["train.batch_size=32", "optim.accumulate=2"])
    assert steps_per_epoch(accumulating, 100) == 2  # 3 batches, 2 per step, the last step short
    assert steps_per_epoch(config, 10) == 1  # fewer images than a batch still makes one step


def test_schedule_preview_has_every_step_and_marks_drops() -> None:
    config = resolve_experiment("quickstart", ["schedule=multistep-10", "train.epochs=12"])
    preview = schedule_preview(config, 5)
    assert len(preview.series) == 60 and preview.steps_per_epoch == 5
    assert preview.drops == [10.0]
    assert preview.epoch_lrs[0] == config.optim.lr and len(preview.epoch_lrs) == 12
    assert preview.epoch_lrs[10] < preview.epoch_lrs[9]
    assert schedule_preview(resolve_experiment("quickstart"), 5).drops == []  # cosine decays, never drops


def test_model_input_prefers_the_data_section_and_model_cost_matches_a_real_build() -> None:
    config = resolve_experiment("quickstart", ["data.limit=300"])
    summary = summarize_data(config.data, samples=3)
    assert model_input(config, summary) == (10, 1, 8)
    assert model_input(config, None) is None  # digits' classes and native size come from the data
    declared = dataclasses.replace(config.data, image_size=16, channels=3, classes=["a", "b"])  # as folder data
    assert model_input(dataclasses.replace(config, data=declared), summary) == (2, 3, 16)  # the section's own win
    cost = model_cost(config.model, 10, 1, 8)
    real = create_model(config.model.name, 10, 1, 8, config.model.dropout, **config.model.options)
    assert cost.params == count_params(real) and cost.macs == count_macs(real, 1, 8)
    assert "Conv2d" in cost.summary


def test_summarize_data_counts_splits_and_picks_samples() -> None:
    data = resolve_experiment("quickstart", ["data.limit=300"]).data
    summary = summarize_data(data, samples=4)
    dataset = load_dataset(data)
    assert summary.train_images == len(dataset.train_idx)
    assert [sum(summary.counts[s]) for s in ("train", "val", "test")] == [
        len(dataset.train_idx), len(dataset.val_idx), len(dataset.test_idx)]
    assert summary.counts["train"] == torch.bincount(dataset.labels[dataset.train_idx], minlength=10).tolist()
    assert [name for name, _ in summary.samples] == ["0", "1", "2", "3"]
    assert summary.samples[0][1].shape == (8, 8, 1) and str(summary.samples[0][1].dtype) == "uint8"


def test_section_presets_follow_the_base_chain() -> None:
    assert section_presets("quickstart") == {"data": None, "model": "small-cnn", "augment": None,
                                             "optim": "sgd", "schedule": "cosine"}
    child = section_presets("tiny200-resnet18-cosine")  # base tiny200-resnet18; its own schedule preset
    assert child["schedule"] == "cosine" and child["model"] == "resnet18-small" and child["data"] == "csv-40px"


def test_preview_module_imports_no_torch() -> None:
    code = "import engine.preview, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_model_preset_costs_size_every_preset_or_say_why_not() -> None:
    costs = model_preset_costs(10, 1, 8)
    small = costs["small-cnn"]
    assert not isinstance(small, str) and small.params == 21482
    assert isinstance(costs["speedrun"], str) and "8x8" in costs["speedrun"]  # too small for its pooling
