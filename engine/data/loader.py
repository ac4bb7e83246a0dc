"""Batches on the device: the image table resident in device memory (or pinned host memory with the
next batch copied ahead on a side stream), a seeded order per epoch, sharded across DDP ranks."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from engine.data.splits import derived_seed

Batch = tuple[torch.Tensor, torch.Tensor]


def fits_on_device(nbytes: int, device: torch.device, budget_gb: float) -> bool:
    """True when a table of `nbytes` may live on `device`: within the budget and well within free memory."""
    if device.type == "cpu":
        return True
    if nbytes > budget_gb * 2**30:
        return False
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return nbytes < 0.8 * free
    return True


class BatchLoader:
    """Yields (uint8 images, int64 labels) batches on `device` from the rows `indices` of a table."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
        *,
        batch_size: int,
        device: torch.device,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        sample_weights: torch.Tensor | None = None,
        budget_gb: float = 8.0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        self.num_rows = len(indices)
        table = images.index_select(0, indices)
        self.resident = fits_on_device(table.numel() * table.element_size(), self.device, budget_gb)
        if self.resident:
            self.images = table.to(self.device)
        else:
            self.images = table.pin_memory() if self.device.type == "cuda" else table
        self.labels = labels.index_select(0, indices).to(self.device)
        self.sample_weights: torch.Tensor | None = None
        if sample_weights is not None:
            weights = torch.as_tensor(sample_weights, dtype=torch.float64)
            if len(weights) == len(labels) and len(weights) != len(indices):
                weights = weights.index_select(0, indices)
            if len(weights) != len(indices):
                raise ValueError("sample_weights must have one weight per table row or per index")
            self.sample_weights = weights.to(self._order_device)

    @property
    def _order_device(self) -> torch.device:
        return self.device if self.resident else torch.device("cpu")

    @property
    def samples_per_rank(self) -> int:
        """Samples each rank sees per epoch (padded by wrapping, or truncated with drop_last)."""
        if self.drop_last:
            return self.num_rows // self.world_size
        return -(-self.num_rows // self.world_size)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        per_rank = self.samples_per_rank
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration uses; the order depends only on (seed, epoch)."""
        self.epoch = int(epoch)

    def epoch_order(self) -> torch.Tensor:
        """This rank's row positions for the current epoch, on the order device (no host sync)."""
        device = self._order_device
        n = self.num_rows
        generator = torch.Generator(device=device)
        generator.manual_seed(derived_seed(self.seed, f"epoch-{self.epoch}"))
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights, n, replacement=True, generator=generator)
        elif self.shuffle:
            order = torch.randperm(n, generator=generator, device=device)
        else:
            order = torch.arange(n, device=device)
        total = self.samples_per_rank * self.world_size
        if total > n:  # wrap around so every rank gets the same number of samples
            order = torch.cat([order, order[: total - n]])
        return order[self.rank:total:self.world_size]

    def _batch_bounds(self) -> Iterator[tuple[int, int]]:
        per_rank = self.samples_per_rank
        for index in range(len(self)):
            start = index * self.batch_size
            yield start, min(start + self.batch_size, per_rank)

    def __iter__(self) -> Iterator[Batch]:
        order = self.epoch_order()
        if self.resident:
            for start, stop in self._batch_bounds():
                rows = order[start:stop]
                yield self.images.index_select(0, rows), self.labels.index_select(0, rows)
        else:
            yield from self._prefetched(order)

    def _prefetched(self, order: torch.Tensor) -> Iterator[Batch]:
        """Host-resident table: gather each batch into pinned memory and copy it one batch ahead."""
        if self.device.type != "cuda":
            for start, stop in self._batch_bounds():
                rows = order[start:stop]
                yield self.images.index_select(0, rows).to(self.device), self.labels[rows.to(self.device)]
            return
        copy_stream = torch.cuda.Stream(self.device)
        shape = (self.batch_size, *self.images.shape[1:])
        buffers = [torch.empty(shape, dtype=torch.uint8).pin_memory() for _ in range(2)]
        copied: list[torch.cuda.Event | None] = [None, None]
        order_device = order.to(self.device, non_blocking=True)
        copy_stream.wait_stream(torch.cuda.current_stream(self.device))  # order_device is ready before use
        bounds = list(self._batch_bounds())

        def stage(index: int) -> tuple[torch.Tensor, torch.Tensor, torch.cuda.Event]:
            start, stop = bounds[index]
            slot = index % 2
            if copied[slot] is not None:
                copied[slot].synchronize()  # the pinned buffer's previous copy must be done before reuse
            staging = buffers[slot][: stop - start]
            torch.index_select(self.images, 0, order[start:stop], out=staging)
            with torch.cuda.stream(copy_stream):
                images = staging.to(self.device, non_blocking=True)
                labels = self.labels.index_select(0, order_device[start:stop])
                event = torch.cuda.Event()
                event.record(copy_stream)
            copied[slot] = event
            return images, labels, event

        pending = stage(0) if bounds else None
        for index in range(len(bounds)):
            images, labels, event = pending
            if index + 1 < len(bounds):
                pending = stage(index + 1)
            current = torch.cuda.current_stream(self.device)
            current.wait_event(event)
            images.record_stream(current)
            labels.record_stream(current)
            yield images, labels
