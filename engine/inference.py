"""A checkpoint ready to predict: its data, normalization, model on the device; logits over a split or images."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from engine import checkpoint as ckpt
from engine.config import DataConfig, ExperimentConfig, to_dict
from engine.errors import CheckpointError
from engine.members import CheckpointRef, EvalOptions, classes_mismatch, effective_ema, eval_device, split_indices

_DATASETS: OrderedDict[str, Any] = OrderedDict()
_DATASETS_KEPT = 2  # evaluation and training data of one member; more would hold large tables in memory


def cached_dataset(data: DataConfig) -> Any:
    """`load_dataset(data)`, remembered for the last two data configs of this process (ensembles, k-fold)."""
    from engine.data import load_dataset

    key = json.dumps(to_dict(data), sort_keys=True)
    if key in _DATASETS:
        _DATASETS.move_to_end(key)
        return _DATASETS[key]
    dataset = load_dataset(data)
    _DATASETS[key] = dataset
    while len(_DATASETS) > _DATASETS_KEPT:
        _DATASETS.popitem(last=False)
    return dataset


@dataclass
class MemberRuntime:
    """What predicting with one checkpoint needs, on one device."""

    model: torch.nn.Module
    augmenter: Any
    dataset: Any
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    seed: int
    batch_size: int
    budget_gb: float


def load_model(ref: CheckpointRef, channels: int, image_size: int, *, use_ema: bool,
               device: torch.device, channels_last: bool) -> torch.nn.Module:
    """The checkpoint's model (EMA weights when asked) in eval mode on `device`; pretrained files not needed."""
    from engine.models import create_model

    loaded = ckpt.load_checkpoint(ref.folder, with_state=False)
    if loaded.meta.get("sha256") != ref.meta.get("sha256"):  # the cache key was made from the older meta
        raise CheckpointError(f"{ref.label}: the checkpoint was replaced while being evaluated (is the run still "
                              "training?); evaluate again")
    weights = loaded.ema if (use_ema and loaded.ema is not None) else loaded.weights
    spec = ref.config.model
    model = create_model(spec.name, len(ref.classes), channels, image_size, spec.dropout, **spec.options)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{ref.label}: its weights do not fit model {spec.name!r} built for {channels} "
                              f"channel(s), {image_size} px and {len(ref.classes)} classes ({first})") from None
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_runtime(ref: CheckpointRef, config: ExperimentConfig, options: EvalOptions) -> MemberRuntime:
    """Load the evaluation data, check its classes against the checkpoint's, build augmenter and model."""
    from engine.augment import Augmenter, resolve_normalization
    from engine.runtime import autocast_dtype

    device = eval_device(config, options)
    dataset = cached_dataset(config.data)
    if list(dataset.classes) != ref.classes:
        raise CheckpointError(classes_mismatch(ref.classes, f"checkpoint {ref.label}", list(dataset.classes),
                                               f"the {config.data.source} data it is evaluated on"))
    stats = dataset
    if config.data != ref.config.data and config.augment.normalize == "dataset":
        stats = cached_dataset(ref.config.data)  # normalize with the statistics the model was trained with
    mean, std = resolve_normalization(config.augment, stats.mean, stats.std, dataset.channels)
    augmenter = Augmenter(config.augment, mean=mean, std=std, num_classes=dataset.num_classes, device=device)
    channels_last = config.train.channels_last and device.type == "cuda"
    model = load_model(ref, dataset.channels, dataset.image_size, use_ema=effective_ema(ref, options),
                       device=device, channels_last=channels_last)
    return MemberRuntime(model, augmenter, dataset, device, autocast_dtype(config.train.precision, device),
                         channels_last, config.train.seed, config.train.eval_batch_size,
                         config.data.device_budget_gb)


def run_views(runtime: MemberRuntime, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
              views: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """View logits (V, N, C) and labels for the rows `indices` of an image table."""
    from engine.data import BatchLoader
    from engine.evaluate import predict_views

    loader = BatchLoader(images, labels, indices, batch_size=runtime.batch_size, device=runtime.device,
                         shuffle=False, drop_last=False, seed=runtime.seed, budget_gb=runtime.budget_gb)
    return predict_views(runtime.model, loader, runtime.augmenter, views, device=runtime.device,
                         seed=runtime.seed, amp_dtype=runtime.amp_dtype, channels_last=runtime.channels_last)


def compute_split_logits(ref: CheckpointRef, config: ExperimentConfig, options: EvalOptions,
                         views: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute a member's view logits on `options.split` (no cache)."""
    runtime = build_runtime(ref, config, options)
    dataset = runtime.dataset
    indices = split_indices(dataset, options.split, f"{ref.label} ({config.data.source} data)")
    return run_views(runtime, dataset.images, dataset.labels, indices, views)
