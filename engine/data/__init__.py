"""Data sources, the cached image table, splits, class weights and batches on the device."""

from __future__ import annotations

from engine.data.dataset import Dataset, channel_stats, class_weights, load_dataset
from engine.data.loader import BatchLoader
from engine.data.paths import data_dir

__all__ = [
    "BatchLoader",
    "Dataset",
    "channel_stats",
    "class_weights",
    "data_dir",
    "load_dataset",
    "load_unlabeled",
]


def __getattr__(name: str):  # load_unlabeled pulls in the image decoder only when used
    if name == "load_unlabeled":
        from engine.data.folders import load_unlabeled

        return load_unlabeled
    raise AttributeError(name)
