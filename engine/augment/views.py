"""Deterministic test-time views of a uint8 batch: identity, hflip, vflip, shift:dx,dy (reflect padded)."""

from __future__ import annotations

import torch
from torch import Tensor

from engine.augment import kernels as K
from engine.errors import ConfigError


def _parse_shift(view: str) -> tuple[int, int]:
    try:
        dx, dy = (int(v) for v in view.partition(":")[2].split(","))
    except ValueError:
        raise ConfigError(f"view {view!r}: expected shift:dx,dy with whole pixels, e.g. shift:2,-2") from None
    return dx, dy


def apply_view(view: str, images_uint8: Tensor) -> Tensor:
    """One deterministic view of a (B, C, H, W) batch, same dtype and shape; "random" needs the Augmenter."""
    if view == "identity":
        return images_uint8
    if view == "hflip":
        return images_uint8.flip(-1)
    if view == "vflip":
        return images_uint8.flip(-2)
    if view.startswith("shift:"):
        dx, dy = _parse_shift(view)
        n = images_uint8.shape[0]
        full = torch.full((n,), 1, dtype=torch.long, device=images_uint8.device)
        return K.shift(images_uint8, full * dx, full * dy, "reflect")
    if view == "random":
        raise ConfigError("view 'random' is not deterministic: use Augmenter.random_view(images, generator)")
    raise ConfigError(f"unknown view {view!r}; views are identity, hflip, vflip, shift:dx,dy and random")
