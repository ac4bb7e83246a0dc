"""Augmented batches for one epoch, resumable mid-epoch with the exact augmentation draws."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class AugmentedBatches:
    """Iterate (inputs, targets) of one epoch, skipping the first `skip` batches without augmenting them.

    `generator_state` is the augmentation RNG state from before the batch that comes next: what a mid-epoch
    checkpoint stores so that a resumed run draws the same augmentations. Augmentation runs inline on the
    step's stream: an A/B on an H200 (BENCHMARKS.md) showed no gain from augmenting on a side stream.
    """

    def __init__(self, loader: Any, augment: Augment, generator: torch.Generator, *, skip: int = 0) -> None:
        self.loader, self.augment, self.generator, self.skip = loader, augment, generator, skip
        self.generator_state: torch.Tensor = generator.get_state()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(self.loader)
        for _ in range(self.skip):
            next(batches, None)
        for images, labels in batches:
            augmented = self.augment(images, labels)
            self.generator_state = self.generator.get_state()
            yield augmented
