"""The Augmenter: uint8 batches on the device in, augmented and normalized float32 batches out."""

from __future__ import annotations

import torch
from torch import Tensor

from engine.augment.mix import mix_batch
from engine.augment.ops import Context, compile_ops, run_steps
from engine.config import AugmentConfig
from engine.errors import ConfigError


def _to_unit_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] to float32 [0, 1]; float input is taken as already in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if images.is_floating_point():
        return images.to(torch.float32)
    raise TypeError(f"expected uint8 or float images, got {images.dtype}")


class Augmenter:
    """Compiled `augment` section: per-image random training ops, mixup/cutmix and normalization.

    Randomness comes only from the generator passed to `train_batch`/`random_view` (on the images' device),
    so one seed gives one output. No call reads a value back to the host, so the GPU never waits on Python.
    """

    def __init__(self, cfg: AugmentConfig, *, mean: list[float], std: list[float], num_classes: int,
                 device: torch.device) -> None:
        if len(mean) != len(std):
            raise ConfigError(f"augment: mean has {len(mean)} values but std has {len(std)}")
        for key, value, lo, hi in (("mixup_alpha", cfg.mixup_alpha, 0.0, 1e6),
                                   ("cutmix_alpha", cfg.cutmix_alpha, 0.0, 1e6), ("mix_prob", cfg.mix_prob, 0.0, 1.0)):
            if not lo <= value <= hi:
                raise ConfigError(f"augment.{key}: {value} is out of range; expected a value in [{lo:g}, {hi:g}]")
        self.cfg = cfg
        self.steps = compile_ops(cfg.ops)
        self.num_classes = num_classes
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.mixing = cfg.mix_prob > 0 and (cfg.mixup_alpha > 0 or cfg.cutmix_alpha > 0)

    def _check(self, images: Tensor, generator: torch.Generator | None = None) -> None:
        if images.ndim != 4:
            raise ValueError(f"expected images shaped (B, C, H, W), got {tuple(images.shape)}")
        if images.shape[1] != self.mean.shape[1] and self.mean.shape[1] != 1:
            raise ConfigError(f"augment: normalization has {self.mean.shape[1]} channel(s) but the images have "
                              f"{images.shape[1]}")
        if generator is not None and generator.device.type != images.device.type:
            raise ValueError(f"the generator is on {generator.device} but the images are on {images.device}; "
                             "create it with torch.Generator(device=images.device)")

    def _normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def _augment(self, images: Tensor, generator: torch.Generator) -> Tensor:
        self._check(images, generator)
        ctx = Context(gen=generator, mean=self.mean, std=self.std)
        return run_steps(self.steps, _to_unit_float(images), ctx)

    def train_batch(self, images: Tensor, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Augment each image independently, normalize, then mixup/cutmix when configured.

        Labels come back unchanged (int64) when mixing is off; when it is on they are always soft
        (B, num_classes) float targets, one-hot for a batch that drew no mix (deciding per batch on the
        host would need a GPU sync every step).
        """
        x = self._normalize(self._augment(images, generator))
        if not self.mixing:
            return x, labels
        return mix_batch(x, labels, self.num_classes, generator, mixup_alpha=self.cfg.mixup_alpha,
                         cutmix_alpha=self.cfg.cutmix_alpha, mix_prob=self.cfg.mix_prob)

    def eval_batch(self, images: Tensor) -> Tensor:
        """Deterministic: uint8 to normalized float32, nothing random."""
        self._check(images)
        return self._normalize(_to_unit_float(images))

    def random_view(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """One random pass through the training ops, without mixup/cutmix (for test-time augmentation)."""
        return self._normalize(self._augment(images, generator))
