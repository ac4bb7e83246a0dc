"""Augmented batches for one epoch, resumable mid-epoch with the exact augmentation draws."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class AugmentedBatches:
    """Iterate (inputs, targets) of one epoch, skipping the first `skip` batches without augmenting them.

    Skipped batches draw nothing from the augmentation generator, so a run resumed mid-epoch (its generator
    restored from the checkpoint) augments the remaining batches exactly as an uninterrupted run. Augmentation
    runs inline on the step's stream: an A/B on an H200 (BENCHMARKS.md) showed no gain from a side stream.
    """

    def __init__(self, loader: Any, augment: Augment, *, skip: int = 0) -> None:
        self.loader, self.augment, self.skip = loader, augment, skip

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(self.loader)
        for _ in range(self.skip):
            next(batches, None)
        for images, labels in batches:
            yield self.augment(images, labels)
