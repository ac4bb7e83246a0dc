"""Source dispatch: each source names a fingerprint (the cache key's content) and a reader of its table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from engine.config import DataConfig
from engine.data.table import Progress, Table, cache_key, fit_table, load_cached, save_cached


@dataclass
class Located:
    """A source ready to read: what determines its content, and how to decode it."""

    fingerprint: dict[str, Any]
    read: Callable[[Progress | None], Table]
    cacheable: bool = True
    native: tuple[int, int] | None = None  # (size, channels) every image has, when known before decoding


def read_digits() -> Table:
    """scikit-learn's bundled handwritten digits: 1,797 8x8 images, 16 gray levels scaled to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    levels = np.asarray(bunch.images, dtype=np.float64)  # (N, 8, 8), values 0..16
    images = torch.from_numpy(np.rint(levels * 255.0 / 16.0).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    classes = [str(int(name)) for name in bunch.target_names]
    return Table(images.contiguous(), labels, classes, None, {"native_size": 8, "native_channels": 1})


def locate(cfg: DataConfig) -> Located:
    """The located source of a config (files found or downloaded; nothing decoded yet)."""
    if cfg.source == "digits":
        # cached: skips importing sklearn
        return Located({"source": "digits"}, lambda progress: read_digits(), native=(8, 1))
    if cfg.source in ("folder", "csv"):
        from engine.data.folders import locate_files

        return locate_files(cfg)
    from engine.data.torchvision_sources import locate_torchvision

    return locate_torchvision(cfg)


def table_shape(located: Located, cfg: DataConfig) -> tuple[int | None, int | None]:
    """(image_size, channels) that determine the table: a value equal to the source's native one is None (keep
    native), so `image_size: 8` and `image_size: null` of the 8 px digits share one cache entry."""
    native_size, native_channels = located.native or (None, None)
    size = None if cfg.image_size == native_size else cfg.image_size
    channels = None if cfg.channels == native_channels else cfg.channels
    return size, channels


def load_table(cfg: DataConfig, progress: Progress | None = None) -> tuple[Table, dict[str, Any]]:
    """The source's table at the configured resolution, from the cache when present; plus info for the run."""
    located = locate(cfg)
    image_size, channels = table_shape(located, cfg)
    fingerprint = {**located.fingerprint, "image_size": image_size, "channels": channels}
    key = cache_key(fingerprint)
    info: dict[str, Any] = {"source": cfg.source, "cache_key": key, "cached": located.cacheable, "cache_hit": False}
    started = time.perf_counter()
    table = load_cached(key) if located.cacheable else None
    if table is not None:
        info["cache_hit"] = True
    else:
        table = fit_table(located.read(progress), image_size, channels, progress)
        if located.cacheable:
            root = located.fingerprint.get("root") or located.fingerprint.get("folder") or cfg.root
            save_cached(key, table, {"source": cfg.source, "root": root,
                                     "image_size": image_size, "channels": channels})
    info["load_seconds"] = round(time.perf_counter() - started, 3)
    return table, info
