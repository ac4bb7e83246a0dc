"""Assembling what a training run needs: data, model, augmentation, optimizer, schedule, EMA, loaders."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from engine import distributed
from engine.config import ExperimentConfig
from engine.events import EventWriter
from engine.errors import Cancelled


class ModelEma:
    """Exponential moving average of a model's weights, updated after every optimizer step."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        import copy

        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        ema_params = [p for p in self.module.parameters()]
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for ema_buffer, buffer in zip(self.module.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)


@dataclass
class TrainingParts:
    """Everything the loop touches, built once per run."""

    model: torch.nn.Module
    model_for_step: Any
    ema: ModelEma | None
    optimizer: torch.optim.Optimizer
    schedule: Any
    scaler: torch.amp.GradScaler
    augmenter: Any
    generator: torch.Generator
    train_loader: Any
    val_loader: Any
    test_loader: Any
    loss: Any
    classes: list[str]
    params: int
    macs: int | None
    grad_clip: float | None
    use_ema_for_eval: bool
    inputs: dict[str, Any]  # image_size, channels, mean, std: what the model takes (saved in checkpoint meta)

    def optimizer_step(self) -> None:
        """Unscale, clip, step, zero the grads, update EMA and the per-step schedule."""
        scaling = self.scaler.is_enabled()  # fp16 only; bf16 and fp32 step the optimizer directly
        if self.grad_clip is not None:
            if scaling:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if scaling:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.schedule.step_batch()

    def eval_model(self) -> torch.nn.Module:
        """The weights evaluation uses: EMA when kept and configured, else the live model."""
        if self.ema is not None and self.use_ema_for_eval:
            return self.ema.module
        return self.model

    def set_backbone_trainable(self, trainable: bool) -> None:
        from engine.models import set_backbone_trainable

        set_backbone_trainable(self.model, trainable)


def _loaders(config: ExperimentConfig, dataset: Any, device: torch.device,
             dist_info: distributed.Dist) -> tuple[Any, Any, Any]:
    from engine.data import BatchLoader, class_weights

    train = config.train
    weights = None
    if config.data.sampler == "weighted":
        per_class = class_weights(dataset.labels[dataset.train_idx], dataset.num_classes)
        weights = per_class[dataset.labels[dataset.train_idx]]
    drop_last = train.drop_last and len(dataset.train_idx) >= train.batch_size
    common = {"device": device, "budget_gb": config.data.device_budget_gb}
    train_loader = BatchLoader(dataset.images, dataset.labels, dataset.train_idx,
                               batch_size=distributed.per_rank_batch(train.batch_size, dist_info), shuffle=True,
                               drop_last=drop_last, seed=train.seed, sample_weights=weights,
                               rank=dist_info.rank, world_size=dist_info.world_size, **common)

    def eval_loader(indices: torch.Tensor) -> Any:
        if len(indices) == 0:
            return None
        return BatchLoader(dataset.images, dataset.labels, indices, batch_size=train.eval_batch_size,
                           shuffle=False, drop_last=False, seed=train.seed, **common)

    return train_loader, eval_loader(dataset.val_idx), eval_loader(dataset.test_idx)


def build_parts(config: ExperimentConfig, device: torch.device, events: EventWriter, *,
                resuming: bool = False, dist_info: distributed.Dist = distributed.SINGLE,
                stop: Any = None) -> TrainingParts:
    """Load the data and build every part of a run on `device`; a resumed run gets its weights from the
    checkpoint afterwards, so `model.pretrained` is not read then. A `stop` (engine.stop.StopRequest) asked for
    while the data is decoded ends it there: `Cancelled`, before any training."""
    from engine.augment import Augmenter, resolve_normalization
    from engine.data import class_weights, load_dataset
    from engine.models import count_macs, count_params, create_model
    from engine.optim import LRSchedule, build_optimizer, unused_milestones_note

    clock = time.perf_counter()
    dataset = load_dataset(config.data, progress=_data_progress(events, stop))
    train_loader, val_loader, test_loader = _loaders(config, dataset, device, dist_info)
    events.emit("data_ready", source=config.data.source, classes=dataset.num_classes,
                counts={"train": len(dataset.train_idx), "val": len(dataset.val_idx), "test": len(dataset.test_idx)},
                image_size=dataset.image_size, channels=dataset.channels, info=dataset.info,
                resident=bool(getattr(train_loader, "resident", False)), load_s=round(time.perf_counter() - clock, 3))
    for note in check_split_sizes(config, len(dataset.train_idx), len(dataset.val_idx)):
        events.emit("warning", message=note)
    skipped = int(dataset.info.get("skipped", 0) or 0)
    if skipped:
        shown = ", ".join(map(str, dataset.info.get("skipped_files", [])[:5]))
        events.emit("warning", message=f"skipped {skipped} unreadable images (data.on_bad_image: skip): {shown}",
                    skipped=skipped, skipped_files=dataset.info.get("skipped_files", []))
    mean, std = resolve_normalization(config.augment, dataset.mean, dataset.std, dataset.channels)
    augmenter = Augmenter(config.augment, mean=mean, std=std, num_classes=dataset.num_classes, device=device)
    spec = config.model
    model = create_model(spec.name, dataset.num_classes, dataset.channels, dataset.image_size, spec.dropout,
                         **spec.options)
    if spec.pretrained and not resuming:
        _load_pretrained(model, spec.pretrained, list(dataset.classes), events)
    elif hasattr(model, "init_from_data") and not resuming:
        sample = dataset.images[dataset.train_idx[:5000]]
        model.init_from_data(augmenter.eval_batch(sample.to(device)).cpu())
    if spec.freeze_backbone_epochs > 0 and not spec.pretrained:
        events.emit("warning", message=f"model.freeze_backbone_epochs={spec.freeze_backbone_epochs} without "
                                       "model.pretrained: the frozen backbone keeps its random initial weights")
    params = count_params(model)
    macs = _safe_macs(count_macs, model, dataset.channels, dataset.image_size)
    events.emit("model_ready", model=config.model.name, params=params, macs=macs)
    model = model.to(device)
    if config.train.channels_last and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    ema = ModelEma(model, config.train.ema_decay) if config.train.ema_decay > 0 else None
    optimizer = build_optimizer(model, config.optim)
    steps_per_epoch = max(1, -(-len(train_loader) // config.optim.accumulate))
    schedule = LRSchedule(optimizer, config.schedule, epochs=config.train.epochs,
                          steps_per_epoch=steps_per_epoch, base_lr=config.optim.lr)
    unused = unused_milestones_note(config.schedule, config.train.epochs)
    if unused:
        events.emit("warning", message=unused)
    scaler = torch.amp.GradScaler(device.type, enabled=(device.type == "cuda" and config.train.precision == "fp16"))
    generator = torch.Generator(device=device)
    generator.manual_seed(config.train.seed + 1 + dist_info.rank)
    model_for_step = distributed.wrap(model, dist_info, device,
                                      partly_frozen=config.model.freeze_backbone_epochs > 0)
    if config.train.compile and device.type == "cuda":
        model_for_step = torch.compile(model_for_step, mode=config.train.compile_mode)
    weights = None
    if config.data.class_weighted_loss:
        weights = class_weights(dataset.labels[dataset.train_idx], dataset.num_classes).to(device)
    smoothing = config.train.label_smoothing

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, weight=weights, label_smoothing=smoothing)

    return TrainingParts(model, model_for_step, ema, optimizer, schedule, scaler, augmenter, generator,
                         train_loader, val_loader, test_loader, loss, list(dataset.classes), params, macs,
                         config.optim.grad_clip, config.eval.use_ema,
                         {"image_size": dataset.image_size, "channels": dataset.channels, "mean": mean, "std": std})


def check_split_sizes(config: ExperimentConfig, train_images: int, val_images: int) -> list[str]:
    """Warnings for splits smaller than the config assumes (no validation image, a batch larger than the training
    split): the run still trains, and each warning says what it loses and what to change. A DataError for what
    would silently act on nothing (a plateau schedule or early stopping watching a missing validation metric)."""
    notes = []
    if val_images == 0:
        note = _no_validation_note(config, train_images)
        if note:
            notes.append(note)
    if config.train.batch_size > train_images:
        limited = f" (data.limit={config.data.limit})" if config.data.limit is not None else ""
        notes.append(f"train.batch_size={config.train.batch_size} exceeds the {train_images} training images"
                     f"{limited}: each epoch is one batch of {train_images}, one optimizer step; lower "
                     f"train.batch_size{' or raise data.limit' if limited else ''}")
    return notes


def _no_validation_note(config: ExperimentConfig, train_images: int) -> str | None:
    """The warning for a run without validation images (None when asked for: val_fraction 0), or a DataError
    when a plateau schedule or early stopping watches a validation metric."""
    from engine.errors import DataError

    data = config.data
    if data.val_fraction > 0:
        limit = f"data.limit={data.limit}" if data.limit is not None else "the split"
        cause = (f"{limit} leaves no validation images (data.val_fraction {data.val_fraction:g} of {train_images} "
                 "images holds none out)")
        fix = "raise data.limit or data.val_fraction, or set data.val_fraction: 0 to train without validation"
    else:
        cause, fix = "data.val_fraction is 0 (no validation images)", "set data.val_fraction, e.g. 0.1"
    plateau = config.schedule.metric if config.schedule.name == "plateau" else None
    watching = [f"{key}: {metric}" for key, metric in (("schedule.metric", plateau),
                                                       ("train.early_stop.metric", config.train.early_stop.metric))
                if metric and metric.startswith("val_")]
    if watching:
        raise DataError(f"data: {cause}, but {' and '.join(watching)} needs validation: it would be NaN every epoch "
                        f"(a plateau schedule cutting the LR blindly, early stopping never firing); {fix}")
    if data.val_fraction == 0:
        return None
    best = config.train.checkpoint.best_metric
    lost = f", and no `best` checkpoint is saved (train.checkpoint.best_metric: {best})" if best.startswith("val_") \
        else ""
    return f"{cause}: validation loss and accuracy are NaN{lost}; {fix}"


def _load_pretrained(model: torch.nn.Module, spec: str, classes: list[str], events: EventWriter) -> None:
    """Load `model.pretrained`; the head of a checkpoint trained on other classes is replaced (engine.transfer)."""
    from engine.transfer import load_start_weights

    replaced = load_start_weights(model, spec, classes)
    events.emit("weights_loaded", source=spec, replaced=replaced)


def _data_progress(events: EventWriter, stop: Any = None) -> Callable[[str, int, int], None]:
    """A load_dataset progress callback that emits `data_progress` events, at most twice a second, and ends the
    loading when `stop` is asked for (a first decode of a large data set can take minutes)."""
    last = [0.0]

    def report(stage: str, done: int, total: int) -> None:
        if stop is not None and stop.requested:
            raise Cancelled(f"{stop.describe()} while loading the data ({done} of {total} images decoded), "
                            "before any training")
        now = time.perf_counter()
        if done >= total or now - last[0] >= 0.5:
            last[0] = now
            events.emit("data_progress", stage=stage, done=int(done), total=int(total))

    return report


def _safe_macs(count_macs: Any, model: torch.nn.Module, channels: int, image_size: int) -> int | None:
    try:
        return int(count_macs(model, channels, image_size))
    except Exception:  # a flop counter gap must not stop training
        return None
