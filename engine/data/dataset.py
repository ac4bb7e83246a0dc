"""The Dataset the trainer uses: the image table, its splits, class names and train-split statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from engine.config import DataConfig
from engine.data.sources import load_table
from engine.data.splits import make_splits
from engine.data.table import Progress
from engine.errors import DataError


@dataclass
class Dataset:
    """A uint8 (N, C, H, W) CPU image table at the training resolution, labels and split index arrays."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    test_idx: torch.Tensor
    mean: list[float]
    std: list[float]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def channels(self) -> int:
        """Image channels (1 or 3)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        """Square image side in pixels."""
        return int(self.images.shape[-1])


def channel_stats(images: torch.Tensor, indices: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] over the rows `indices` (float64 sums, in chunks)."""
    channels = images.shape[1]
    if len(indices) == 0:
        return [0.5] * channels, [0.5] * channels
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for start in range(0, len(indices), 4096):
        chunk = images.index_select(0, indices[start:start + 4096]).float()
        total += chunk.sum(dim=(0, 2, 3), dtype=torch.float64) / 255.0
        squares += chunk.square().sum(dim=(0, 2, 3), dtype=torch.float64) / 255.0**2
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return [round(float(v), 6) for v in mean], [round(max(float(v), 1e-6), 6) for v in std]


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float32 inverse class frequency, scaled to mean 1; absent classes get weight 0."""
    counts = torch.bincount(labels.long().cpu(), minlength=num_classes)[:num_classes].to(torch.float64)
    inverse = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
    if inverse.sum() == 0:
        return torch.ones(num_classes, dtype=torch.float32)
    return (inverse * num_classes / inverse.sum()).to(torch.float32)


def _compact(images: torch.Tensor, labels: torch.Tensor, splits: list[torch.Tensor]) -> tuple:
    """Keep only the rows some split uses, and renumber the split indices."""
    keep = torch.cat(splits).unique(sorted=True)
    if len(keep) == len(labels):
        return images, labels, splits
    position = torch.full((len(labels),), -1, dtype=torch.long)
    position[keep] = torch.arange(len(keep))
    return images.index_select(0, keep).contiguous(), labels[keep], [position[s] for s in splits]


def _check_every_class_present(table: Any, cfg: DataConfig) -> None:
    """A class of a folder or CSV with no image (all its files skipped as unreadable, or a data.classes name
    no row uses) cannot be learned: an error. Built-in datasets are taken as they are."""
    if cfg.source not in ("folder", "csv"):
        return
    counts = torch.bincount(table.labels, minlength=len(table.classes))
    empty = [name for name, count in zip(table.classes, counts.tolist()) if count == 0]
    if not empty:
        return
    skipped = int(table.meta.get("skipped", 0) or 0)
    why = (f"all its images were unreadable and skipped ({skipped} skipped in all, data.on_bad_image: skip)"
           if skipped else "no image has that label")
    raise DataError(f"data: class `{empty[0]}` has no images: {why}"
                    + (f"; {len(empty) - 1} more such classes" if len(empty) > 1 else ""))


def load_dataset(cfg: DataConfig, *, progress: Progress | None = None) -> Dataset:
    """Load (or decode and cache) the source of `cfg`, then split it and compute the train statistics."""
    table, info = load_table(cfg, progress)
    if len(table.classes) < 2:
        only = f" (`{table.classes[0]}`)" if table.classes else ""
        raise DataError(f"data: source `{cfg.source}` has {len(table.classes)} class{only}; a classifier needs at "
                        "least two (it would reach accuracy 1.0 by always giving the same answer); add "
                        "the other classes' folders or labels")
    _check_every_class_present(table, cfg)
    splits = list(make_splits(
        table.labels, table.test_start, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
        seed=cfg.split_seed, folds=cfg.folds, fold=cfg.fold, limit=cfg.limit, class_names=list(table.classes),
    ))
    images, labels = table.images, table.labels
    if cfg.limit is not None:
        images, labels, splits = _compact(images, labels, splits)
    train_idx, val_idx, test_idx = splits
    if len(train_idx) == 0:
        raise DataError(f"data: the training split of source `{cfg.source}` is empty ({len(labels)} images in all)")
    if int(labels[train_idx].unique().numel()) < 2:
        raise DataError(f"data: the training split of source `{cfg.source}` holds a single class "
                        f"(`{table.classes[int(labels[train_idx[0]])]}`); a classifier needs images of at least two")
    mean, std = channel_stats(images, train_idx)
    info.update(
        root=table.meta.get("root"),
        counts={"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)},
        num_images=len(labels),
        image_shape=list(images.shape[1:]),
        skipped=int(table.meta.get("skipped", 0)),
        skipped_files=list(table.meta.get("skipped_files", [])),
        native_size=table.meta.get("native_size"),
    )
    return Dataset(images.contiguous(), labels, list(table.classes), train_idx, val_idx, test_idx, mean, std, info)
