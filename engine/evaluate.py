"""Evaluation: logits of a model over a split, and the metrics computed from them."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from engine.runtime import autocast


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    batches: object,
    transform: Callable[[torch.Tensor], torch.Tensor],
    *,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `model` over `batches` of (uint8 images, labels) in eval mode; returns float32 logits and labels (device)."""
    was_training = model.training
    model.eval()
    logits_parts, label_parts = [], []
    try:
        for images, labels in batches:  # type: ignore[attr-defined]
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
