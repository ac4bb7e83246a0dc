"""Per-channel normalization constants from `augment.normalize`; no torch needed."""

from __future__ import annotations

from engine.config import AugmentConfig
from engine.errors import ConfigError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _per_channel(values: list[float], channels: int, key: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ConfigError(f"{key}: has {len(values)} values but the images have {channels} channel(s); "
                          f"give {channels} value(s) or one for all")
    return values


def resolve_normalization(cfg: AugmentConfig, dataset_mean: list[float], dataset_std: list[float],
                          channels: int) -> tuple[list[float], list[float]]:
    """(mean, std) per channel, in [0, 1] pixel units, for the configured normalization."""
    kind = cfg.normalize
    if kind == "none":
        return [0.0] * channels, [1.0] * channels
    if kind == "uniform":
        return [0.5] * channels, [0.5] * channels
    if kind == "imagenet":
        if channels == 1:  # gray images: the average of the RGB statistics
            return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
        return _per_channel(IMAGENET_MEAN, channels, "augment.normalize"), list(IMAGENET_STD)
    if kind == "dataset":
        mean = _per_channel(dataset_mean, channels, "augment.normalize: dataset mean")
        std = _per_channel(dataset_std, channels, "augment.normalize: dataset std")
        # A constant channel has std 0; dividing by it would give inf, and it carries no signal anyway.
        return mean, [s if s > 1e-6 else 1.0 for s in std]
    if cfg.mean is None or cfg.std is None:
        raise ConfigError("augment.normalize: custom needs augment.mean and augment.std (values in [0, 1])")
    mean = _per_channel(cfg.mean, channels, "augment.mean")
    std = _per_channel(cfg.std, channels, "augment.std")
    if any(s <= 0 for s in std):
        raise ConfigError(f"augment.std: {cfg.std} must be positive")
    return mean, std
