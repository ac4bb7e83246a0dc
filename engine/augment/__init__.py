"""Augmentation presets compiled to batched, per-image random tensor ops (CPU or GPU).

`check_ops`, `op_names`, `tta_views` and `resolve_normalization` need no torch, so validating a preset stays
fast; `Augmenter` and `apply_view` load the torch side on first use.

Layout: `schema` (what an op may say), `kernels` (batched tensor kernels), `ops` (op builders),
`policies` (RandAugment / AutoAugment / TrivialAugment), `mix` (mixup / cutmix), `pipeline` (Augmenter),
`tta` and `views` (test-time augmentation), `normalization`.
"""

from __future__ import annotations

from typing import Any

from engine.augment.normalization import IMAGENET_MEAN, IMAGENET_STD, resolve_normalization
from engine.augment.schema import check_ops, op_names
from engine.augment.tta import tta_views

__all__ = ["Augmenter", "IMAGENET_MEAN", "IMAGENET_STD", "apply_view", "check_ops", "op_names",
           "resolve_normalization", "tta_views"]


def __getattr__(name: str) -> Any:
    """Import the torch-backed parts lazily."""
    if name == "Augmenter":
        from engine.augment.pipeline import Augmenter
        return Augmenter
    if name == "apply_view":
        from engine.augment.views import apply_view
        return apply_view
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
