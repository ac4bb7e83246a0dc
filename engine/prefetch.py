"""Augmented batches ahead of the step: on CUDA, batch i+1 is gathered and augmented on a side stream while
the model trains on batch i, so augmentation costs the step (almost) nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class AugmentedBatches:
    """Iterate (inputs, targets) of one epoch, skipping the first `skip` batches without augmenting them.

    `generator_state` is the augmentation RNG state from before the batch that comes next: what a mid-epoch
    checkpoint must store so that a resumed run draws the same augmentations.
    """

    def __init__(self, loader: Any, augment: Augment, generator: torch.Generator, device: torch.device,
                 *, skip: int = 0) -> None:
        self.loader, self.augment, self.generator, self.device = loader, augment, generator, device
        self.skip = skip
        self.generator_state: torch.Tensor = generator.get_state()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = iter(self.loader)
        for _ in range(self.skip):
            next(batches, None)
        if self.device.type != "cuda":
            for images, labels in batches:
                augmented = self.augment(images, labels)
                self.generator_state = self.generator.get_state()
                yield augmented
            return
        yield from self._overlapped(batches)

    def _overlapped(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        pending = self._prepare(batches, main, side)
        while pending is not None:
            inputs, targets, ready, _ = pending
            pending = self._prepare(batches, main, side)  # queued on the side stream before this step's kernels
            self.generator_state = pending[3] if pending is not None else self.generator.get_state()
            main.wait_event(ready)
            inputs.record_stream(main)
            targets.record_stream(main)
            yield inputs, targets

    def _prepare(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], main: torch.cuda.Stream,
                 side: torch.cuda.Stream) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event, torch.Tensor] | None:
        state_before = self.generator.get_state()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            batch = next(batches, None)
            if batch is None:
                return None
            inputs, targets = self.augment(*batch)
            ready = torch.cuda.Event()
            ready.record(side)
        return inputs, targets, ready, state_before
