"""A checkpoint ready to predict: its data, normalization, model on the device; logits over a split or images."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from engine.config import DataConfig, ExperimentConfig, to_dict
from engine.errors import CheckpointError, EngineError, classes_mismatch
from engine.members import CheckpointRef, EvalOptions, effective_ema, eval_device, pinned, release, split_indices
from engine.progress import Progress, or_default

_DATASETS: OrderedDict[str, Any] = OrderedDict()
_DATASETS_KEPT = 2  # evaluation and training data of one member; more would hold large tables in memory
_DATASETS_LOCK = threading.Lock()  # workers of a UI may evaluate at once: one loads, the others wait and share


def cached_dataset(data: DataConfig) -> Any:
    """`load_dataset(data)`, remembered for the last two data configs of this process (ensembles, k-fold);
    safe to call from several threads."""
    from engine.data import load_dataset

    key = json.dumps(to_dict(data), sort_keys=True)
    with _DATASETS_LOCK:
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
    dataset: Any  # the evaluation data; None when predicting on images outside it
    image_size: int
    channels: int
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    seed: int
    batch_size: int
    budget_gb: float


def load_model(ref: CheckpointRef, channels: int, image_size: int, *, use_ema: bool,
               device: torch.device, channels_last: bool) -> torch.nn.Module:
    """The checkpoint's model (EMA weights when asked) in eval mode on `device`; pretrained files not needed.
    The weights are those of the version `pinned` read whole (the one a cache key was made from), never a newer
    save of a run still training; the in-memory copy is dropped once the model holds them."""
    from engine.models import create_model

    loaded = pinned(ref)
    weights = loaded.ema if (use_ema and loaded.ema is not None) else loaded.weights
    spec = ref.config.model
    model = create_model(spec.name, len(ref.classes), channels, image_size, spec.dropout, **spec.options)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        first = lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)  # the first tensor
        raise CheckpointError(f"{ref.label}: its weights do not fit model {spec.name!r} built for {channels} "
                              f"channel(s), {image_size} px and {len(ref.classes)} classes ({first})") from None
    release(ref)
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_runtime(ref: CheckpointRef, config: ExperimentConfig, options: EvalOptions, *,
                  with_data: bool = True) -> MemberRuntime:
    """Load the evaluation data, check its classes against the checkpoint's, build augmenter and model.

    Without `with_data` (predictions on other images) the data is not loaded when the checkpoint records the
    input size, channels and normalization it was trained with.
    """
    from engine.augment import Augmenter
    from engine.runtime import autocast_dtype

    device = eval_device(config, options)
    trained = ref.meta.get("inputs")
    dataset = cached_dataset(config.data) if with_data or not trained else None
    if dataset is not None and list(dataset.classes) != ref.classes:
        raise CheckpointError(classes_mismatch(ref.classes, f"checkpoint {ref.label}", list(dataset.classes),
                                               f"the {config.data.source} data it is evaluated on"))
    image_size = dataset.image_size if dataset is not None else int(trained["image_size"])
    channels = dataset.channels if dataset is not None else int(trained["channels"])
    mean, std = _normalization(ref, config, dataset, channels)
    augmenter = Augmenter(config.augment, mean=mean, std=std, num_classes=len(ref.classes), device=device)
    channels_last = config.train.channels_last and device.type == "cuda"
    model = load_model(ref, channels, image_size, use_ema=effective_ema(ref, options),
                       device=device, channels_last=channels_last)
    return MemberRuntime(model, augmenter, dataset, image_size, channels, device,
                         autocast_dtype(config.train.precision, device), channels_last, config.train.seed,
                         config.train.eval_batch_size, config.data.device_budget_gb)


NORMALIZATION_KEYS = ("normalize", "mean", "std")


def _normalization(ref: CheckpointRef, config: ExperimentConfig, dataset: Any,
                   channels: int) -> tuple[list[float], list[float]]:
    """The mean/std the model was trained with (recorded in its checkpoint), unless the evaluation config asks
    for another normalization; `dataset` statistics are those of the training data, never the evaluated data."""
    from engine.augment import resolve_normalization

    trained = ref.meta.get("inputs")
    same = all(getattr(config.augment, k) == getattr(ref.config.augment, k) for k in NORMALIZATION_KEYS)
    if trained and same:
        return [float(v) for v in trained["mean"]], [float(v) for v in trained["std"]]
    stats = dataset
    if config.augment.normalize == "dataset" and (dataset is None or config.data != ref.config.data):
        stats = cached_dataset(ref.config.data)  # checkpoints from before `inputs` was recorded
    mean = stats.mean if stats is not None else [0.5] * channels
    std = stats.std if stats is not None else [0.5] * channels
    return resolve_normalization(config.augment, mean, std, channels)


def run_views(runtime: MemberRuntime, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
              views: list[str], *, progress: Progress | None = None,
              stage: str = "predicting") -> tuple[torch.Tensor, torch.Tensor]:
    """View logits (V, N, C) and labels for the rows `indices` of an image table (progress per batch)."""
    from engine.data import BatchLoader
    from engine.evaluate import predict_views

    try:
        loader = BatchLoader(images, labels, indices, batch_size=runtime.batch_size, device=runtime.device,
                             shuffle=False, drop_last=False, seed=runtime.seed, budget_gb=runtime.budget_gb)
        return predict_views(runtime.model, loader, runtime.augmenter, views, device=runtime.device,
                             seed=runtime.seed, amp_dtype=runtime.amp_dtype, channels_last=runtime.channels_last,
                             progress=progress, stage=stage)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory_error(exc, f"predicting ({stage})", runtime.batch_size, "train.eval_batch_size",
                                      runtime.device) from None
        raise


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator failing."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def out_of_memory_error(exc: BaseException, doing: str, batch_size: int, key: str, device: Any) -> EngineError:
    """The one-line error for running out of memory: what was done, at which batch size, and what to try."""
    on_gpu = isinstance(exc, torch.cuda.OutOfMemoryError)
    where = "the GPU" if on_gpu else f"{device}"
    other = ("--device cpu, or free the GPU (is another process using it?)" if on_gpu
             else "a machine with more memory")
    return EngineError(f"out of memory on {where} {doing} at batch size {batch_size} ({key}): try --set "
                       f"{key}={max(1, batch_size // 2)}, or {other}")


def compute_split_logits(ref: CheckpointRef, config: ExperimentConfig, options: EvalOptions, views: list[str], *,
                         progress: Progress | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute a member's view logits on `options.split` (no cache), reporting progress per batch."""
    progress = or_default(progress)
    progress.report(f"{ref.label}: loading model and data", 0, 1)
    try:
        runtime = build_runtime(ref, config, options)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory_error(exc, f"loading {ref.label}", config.train.eval_batch_size,
                                      "train.eval_batch_size", options.device or config.train.device) from None
        raise
    dataset = runtime.dataset
    indices = split_indices(dataset, options.split, f"{ref.label} ({config.data.source} data)")
    return run_views(runtime, dataset.images, dataset.labels, indices, views, progress=progress,
                     stage=f"{ref.label}: {options.split}")


def split_images(ref: CheckpointRef, options: EvalOptions, positions: list[int]) -> tuple[torch.Tensor, list[int]]:
    """The uint8 images (K, C, H, W) at `positions` of the evaluated split (positions as in an evaluation record's
    `confident_mistakes`), and their rows in the data table."""
    from engine.members import eval_config

    config = eval_config(ref, options)
    dataset = cached_dataset(config.data)
    indices = split_indices(dataset, options.split, f"{ref.label} ({config.data.source} data)")
    rows = indices[torch.as_tensor(positions, dtype=torch.long)] if positions else indices[:0]
    return dataset.images.index_select(0, rows.long()), [int(r) for r in rows.tolist()]
