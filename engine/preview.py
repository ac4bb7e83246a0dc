"""Looking at an experiment before training it: steps per epoch, the LR of every step, model size at the data's
input, and a data summary. `schedule preview` and the console's Launch screen call these same functions.

Importing this module is torch-free (the console imports it at start-up); the functions that need torch or the
data import them when called.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import DataConfig, ExperimentConfig, ModelConfig


@dataclass(frozen=True)
class SchedulePreview:
    """The LR of every optimizer step of a run, the epochs where it drops, and caveats to show with it."""

    steps_per_epoch: int
    series: list[tuple[float, float]]  # (epoch as a float, LR) per optimizer step
    drops: list[float]  # epochs (floats, 0-based) where a stepped schedule drops the LR
    note: str | None  # the preview is not exact (plateau)
    warning: str | None  # part of the schedule never applies (late milestones)
    plan: str | None = None  # the planned schedule and its extension segments, when a run was extended
    pieces: list[tuple[int, str]] = field(default_factory=list)  # (first epoch, 0-based; shape) of each piece

    @property
    def epoch_lrs(self) -> list[float]:
        """The LR at the first step of each epoch."""
        return [lr for _, lr in self.series[:: self.steps_per_epoch]]


@dataclass(frozen=True)
class DataSummary:
    """What a data section yields at the training resolution: classes, counts per split, a few sample images."""

    source: str
    classes: list[str]
    counts: dict[str, list[int]]  # split name -> images per class
    channels: int
    image_size: int
    mean: list[float]
    std: list[float]
    samples: list[tuple[str, Any]] = field(default_factory=list)  # (class name, HxWxC uint8 numpy array)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def train_images(self) -> int:
        """Images in the training split."""
        return sum(self.counts.get("train", []))


@dataclass(frozen=True)
class ModelCost:
    """Size and cost of a model at one input."""

    params: int
    macs: int | None  # multiply-accumulates per image; None when the counter cannot trace the model
    num_classes: int
    channels: int
    image_size: int
    summary: str  # the module tree as torch prints it


def steps_per_epoch(config: ExperimentConfig, train_images: int) -> int:
    """Optimizer steps in one epoch of `train_images` images (batch size, drop_last and accumulation applied)."""
    train = config.train
    if train.drop_last:
        batches = train_images // train.batch_size
    else:
        batches = -(-train_images // train.batch_size)
    return max(1, -(-max(batches, 1) // config.optim.accumulate))


def steps_per_epoch_from_data(config: ExperimentConfig) -> int:
    """Steps per epoch counted on the experiment's data (loaded, or read from the cache)."""
    from engine.data import load_dataset
    from engine.errors import EngineError

    try:
        dataset = load_dataset(config.data)
    except EngineError as exc:
        raise type(exc)(f"{exc}\n(the preview needs the data only to count steps: pass --steps-per-epoch N "
                        "to preview without it)") from exc
    return steps_per_epoch(config, len(dataset.train_idx))


def schedule_preview(config: ExperimentConfig, steps: int) -> SchedulePreview:
    """The LR of every optimizer step as the run's own LRSchedule would set it (extension segments included),
    with drops marked."""
    from engine.optim import lr_drops, preview_note, preview_schedule, unused_milestones_note
    from engine.schedule_extension import describe_extension, segment_starts
    from engine.train import STEPPED_SCHEDULES

    schedule, epochs = config.schedule, config.train.epochs
    series = preview_schedule(schedule, base_lr=config.optim.lr, epochs=epochs, steps_per_epoch=steps)
    pieces = [(0, schedule.name)] + [(int(start), seg.name) for start, seg in segment_starts(schedule, epochs)]
    stepped = any(name in STEPPED_SCHEDULES for _, name in pieces)
    return SchedulePreview(steps, series, lr_drops(series) if stepped else [], preview_note(schedule),
                           unused_milestones_note(schedule, epochs), describe_extension(schedule, epochs),
                           [(first, name) for first, name in pieces if first < epochs])


def preview_target(target: str, overrides: list[str], runs_root: Path) -> tuple[ExperimentConfig, Path | None]:
    """What `schedule preview` shows: an experiment (preset name or YAML file) with `overrides`, else a run's
    recorded config (extensions included) and its folder. An experiment preset of the name wins over a run."""
    from engine.errors import ConfigError, RunError, did_you_mean
    from engine.presets import find_preset, list_presets, resolve_experiment
    from engine.runs import list_runs, read_config, resolve_run

    try:
        find_preset("experiment", target)
    except ConfigError:
        try:
            run_dir = resolve_run(runs_root, target)
        except RunError:
            names = [p.name for p in list_presets("experiment")] + [r.name for r in list_runs(runs_root)]
            raise ConfigError(f"no experiment preset or run named {target!r}{did_you_mean(target, names)} (see "
                              f"`imgcls-console presets list experiment` and `imgcls-console runs list`)") from None
        if overrides:
            raise ConfigError(f"--set {overrides[0]}: a run's schedule is previewed as it was recorded; preview an "
                              "extension with --epochs N (and --extend-schedule)")
        return read_config(run_dir), run_dir
    return resolve_experiment(target, overrides), None


def run_steps_per_epoch(run_dir: Path, config: ExperimentConfig) -> int | None:
    """The optimizer steps per epoch a run trained with (from its epoch_start events); None before its first."""
    from engine.events import read_events
    from engine.runs import RunFolder

    batches = None
    for event in read_events(RunFolder(run_dir).events, {"epoch_start"}):
        batches = int(event["steps"])
    return None if batches is None else max(1, -(-batches // config.optim.accumulate))


def split_counts(labels: Any, splits: dict[str, Any], num_classes: int) -> dict[str, list[int]]:
    """Images per class in each split (labels: int64 tensor; splits: name -> index tensor)."""
    import torch

    return {name: torch.bincount(labels[idx], minlength=num_classes).tolist() for name, idx in splits.items()}


def summarize_data(data: DataConfig, *, samples: int = 6) -> DataSummary:
    """Load the data section (from the cache when present) and summarize it, with one sample image of each of
    the first `samples` classes of the training split."""
    from engine.data import load_dataset

    dataset = load_dataset(data)
    splits = {"train": dataset.train_idx, "val": dataset.val_idx, "test": dataset.test_idx}
    counts = split_counts(dataset.labels, splits, dataset.num_classes)
    picked: list[tuple[str, Any]] = []
    train_labels = dataset.labels[dataset.train_idx]
    for label in range(min(samples, dataset.num_classes)):
        rows = dataset.train_idx[train_labels == label]
        if len(rows):
            image = dataset.images[int(rows[0])].permute(1, 2, 0).contiguous().numpy()  # HxWxC uint8
            picked.append((dataset.classes[label], image))
    return DataSummary(data.source, list(dataset.classes), counts, dataset.channels, dataset.image_size,
                       dataset.mean, dataset.std, picked, dict(dataset.info))


def model_input(config: ExperimentConfig, data: DataSummary | None) -> tuple[int, int, int] | None:
    """(num_classes, channels, image_size) the model is built for: the data section's `classes`, `channels` and
    `image_size` where it sets them, else what its data yields (`data`); None when neither says."""
    section = config.data
    num_classes = len(section.classes) if section.classes else (data.num_classes if data else None)
    channels = section.channels or (data.channels if data else None)
    image_size = section.image_size or (data.image_size if data else None)
    if num_classes is None or channels is None or image_size is None:
        return None
    return num_classes, channels, image_size


def model_cost(model: ModelConfig, num_classes: int, channels: int, image_size: int) -> ModelCost:
    """Parameters and MACs of the model section at this input, built on the meta device (no memory, no weights
    loaded); a builder that cannot run on meta tensors is built on the CPU."""
    import torch

    from engine.errors import ModelError
    from engine.models import count_macs, count_params, create_model

    def build() -> torch.nn.Module:
        return create_model(model.name, num_classes, channels, image_size, model.dropout, **model.options)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # init functions warn that meta tensors are skipped
        try:
            with torch.device("meta"):
                network = build()
        except ModelError:
            raise
        except Exception:  # an op without a meta kernel at build time
            network = build()
    try:
        macs: int | None = count_macs(network, channels, image_size)
    except Exception:  # a flop counter gap: show the parameters anyway
        macs = None
    return ModelCost(count_params(network), macs, num_classes, channels, image_size, str(network))


def model_preset_size(path: Path) -> tuple[ModelCost, bool]:
    """A model preset file's cost at the input it is `sized_for` (CIFAR-10's when it does not say), and whether it
    says: what `presets list model` shows. A bad preset raises its one-line error."""
    from engine.config import section_from_dict
    from engine.presets import load_section_preset, model_preset_input

    (num_classes, channels, image_size), said = model_preset_input(path)
    section = section_from_dict("model", load_section_preset("model", str(path)), str(path))
    return model_cost(section, num_classes, channels, image_size), said


def section_presets(experiment: str) -> dict[str, str | None]:
    """Which preset each section of an experiment (name or file) is built on, following its `base` chain; None
    for a section written inline. Field overrides next to `preset:` keep the preset's name."""
    from engine.config import PRESET_KINDS
    from engine.presets import find_preset, load_mapping

    chain: list[dict[str, Any]] = []
    path = find_preset("experiment", experiment)
    seen: set[Path] = set()
    while path.resolve() not in seen:  # a cycle is reported by resolve_experiment, not here
        seen.add(path.resolve())
        raw = load_mapping(path)
        chain.append(raw)
        if not isinstance(raw.get("base"), str):
            break
        path = find_preset("experiment", raw["base"], path.parent)
    names: dict[str, str | None] = {kind: None for kind in PRESET_KINDS if kind != "experiment"}
    for raw in reversed(chain):  # the base first, each child on top
        for kind in names:
            value = raw.get(kind)
            if isinstance(value, str):
                names[kind] = value
            elif isinstance(value, dict) and isinstance(value.get("preset"), str):
                names[kind] = value["preset"]
    return names


def model_preset_costs(num_classes: int, channels: int, image_size: int) -> dict[str, ModelCost | str]:
    """Every model preset's size at this input (its cost, or why it cannot be built there, e.g. an input too small
    for its downsampling), for choosing among them."""
    from engine.config import section_from_dict
    from engine.errors import EngineError
    from engine.presets import list_presets, load_section_preset

    costs: dict[str, ModelCost | str] = {}
    for info in list_presets("model"):
        try:
            section = section_from_dict("model", load_section_preset("model", str(info.path)), str(info.path))
            costs[info.name] = model_cost(section, num_classes, channels, image_size)
        except EngineError as exc:
            costs[info.name] = str(exc)
    return costs
