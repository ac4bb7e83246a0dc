"""Evaluation: logits of a model over a split (plain and per TTA view), and loss/accuracy from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from engine.progress import Progress, or_default
from engine.runtime import autocast


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    batches: object,
    transform: Callable[[torch.Tensor], torch.Tensor],
    *,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    before_batch: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `model` over `batches` of (uint8 images, labels) in eval mode; returns float32 logits and labels (device).
    `before_batch(i)` runs before batch i (progress, and a cancel check that may raise)."""
    was_training = model.training
    model.eval()
    logits_parts, label_parts = [], []
    try:
        for index, (images, labels) in enumerate(batches):  # type: ignore[call-overload]
            if before_batch is not None:
                before_batch(index)
            inputs = transform(images)
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with autocast(amp_dtype, inputs.device):
                logits = model(inputs)
            logits_parts.append(logits.float())
            label_parts.append(labels)
    finally:
        model.train(was_training)
    if not logits_parts:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits_parts), torch.cat(label_parts)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy (one host sync)."""
    if logits.numel() == 0:
        return float("nan"), float("nan")
    loss = F.cross_entropy(logits, labels)
    acc = (logits.argmax(1) == labels).float().mean()
    values = torch.stack([loss, acc]).tolist()
    return float(values[0]), float(values[1])


def view_transform(view: str, augmenter: Any,
                   generator: torch.Generator | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The uint8 -> normalized float transform of one TTA view ("random" draws from `generator`)."""
    if view == "identity":
        return augmenter.eval_batch
    if view == "random":
        if generator is None:
            raise ValueError("a random view needs a generator")
        return lambda images: augmenter.random_view(images, generator)
    from engine.augment import apply_view

    return lambda images: augmenter.eval_batch(apply_view(view, images))


def predict_views(
    model: torch.nn.Module,
    batches: object,
    augmenter: Any,
    views: list[str],
    *,
    device: torch.device,
    seed: int,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    progress: Progress | None = None,
    stage: str = "predicting",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every view stacked (V, N, C) on the CPU, and the labels (N,); the identity view is exactly
    plain evaluation. Random view i draws from its own generator seeded by (seed, i), so results repeat.
    Progress counts batches over all views; a cancel request stops it between batches (`Cancelled`)."""
    from engine.data.splits import derived_seed

    progress = or_default(progress)
    per_batch = len(batches) if hasattr(batches, "__len__") else 0  # type: ignore[arg-type]
    total = per_batch * len(views)
    per_view, labels = [], None
    for index, view in enumerate(views):
        generator = None
        if view == "random":
            generator = torch.Generator(device=device)
            generator.manual_seed(derived_seed(seed, f"tta-random-{index}"))
        text = f"{stage} (view {index + 1}/{len(views)}: {view})"
        done_before = index * per_batch
        logits, view_labels = predict_logits(
            model, batches, view_transform(view, augmenter, generator), amp_dtype=amp_dtype,
            channels_last=channels_last,
            before_batch=lambda i, text=text, done=done_before: progress.report(text, done + i, total))
        per_view.append(logits.cpu())
        labels = view_labels.cpu() if labels is None else labels
    if labels is None:
        raise ValueError("no views to predict")
    progress.report(stage, total, total)
    return torch.stack(per_view), labels
