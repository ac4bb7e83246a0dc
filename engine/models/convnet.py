"""`convnet`: a configurable stack of conv blocks and an FC head; `vgg-small` is a preset-shaped variant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from engine.errors import ModelError
from engine.models.layers import activation, choose, mark_head, per_layer, require_size
from engine.models.registry import register_model

POOLS = ("max", "avg", "none")


@dataclass
class ConvLayer:
    """One conv block: conv -> (BN) -> activation -> (pool) -> (dropout)."""

    channels: int
    kernel: int
    stride: int
    padding: int
    pool: str
    batch_norm: bool
    dropout: float

    def out_size(self, size: int, pool_size: int) -> int:
        """Spatial size after this block (0 or less when the input is too small)."""
        size = (size + 2 * self.padding - self.kernel) // self.stride + 1
        if size >= 1 and self.pool != "none":
            size //= pool_size
        return size


def _padding(value: int | str, kernel: int, index: int) -> int:
    if value == "same":
        return kernel // 2
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ModelError(f"model.options.padding[{index}]: expected 'same' or a non-negative integer, got {value!r}")


def _layers(
    channels: Sequence[int], kernel: int | Sequence[int], stride: int | Sequence[int],
    padding: int | str | Sequence[int | str], pool: str | Sequence[str], batch_norm: bool | Sequence[bool],
    conv_dropout: float | Sequence[float],
) -> list[ConvLayer]:
    n = len(channels)
    kernels = per_layer(kernel, n, "kernel")
    pads = per_layer(padding, n, "padding")
    pools = [choose(p, POOLS, f"pool[{i}]") for i, p in enumerate(per_layer(pool, n, "pool"))]
    return [
        ConvLayer(int(c), int(k), int(s), _padding(p, int(k), i), pl, bool(bn), float(d))
        for i, (c, k, s, p, pl, bn, d) in enumerate(zip(
            channels, kernels, per_layer(stride, n, "stride"), pads, pools,
            per_layer(batch_norm, n, "batch_norm"), per_layer(conv_dropout, n, "conv_dropout"),
        ))
    ]


def _min_size(layers: list[ConvLayer], pool_size: int) -> int:
    """Smallest square input for which every block still has at least a 1x1 output."""
    for size in range(1, 4097):
        out = size
        for layer in layers:
            out = layer.out_size(out, pool_size)
            if out < 1:
                break
        if out >= 1:
            return size
    return 4097


class ConvNet(nn.Module):
    """Conv blocks, then flatten (or global pooling), hidden FC layers, dropout and the linear head."""

    def __init__(
        self, layers: list[ConvLayer], in_channels: int, image_size: int, num_classes: int, act: str,
        pool_size: int, global_pool: str, fc: Sequence[int], fc_dropout: float, dropout: float,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        ch, size = in_channels, image_size
        for layer in layers:
            blocks.append(nn.Conv2d(ch, layer.channels, layer.kernel, layer.stride, layer.padding,
                                    bias=not layer.batch_norm))
            if layer.batch_norm:
                blocks.append(nn.BatchNorm2d(layer.channels))
            blocks.append(activation(act))
            if layer.pool != "none":
                blocks.append(nn.MaxPool2d(pool_size) if layer.pool == "max" else nn.AvgPool2d(pool_size))
            if layer.dropout > 0:
                blocks.append(nn.Dropout(layer.dropout))
            ch, size = layer.channels, layer.out_size(size, pool_size)
        self.features = nn.Sequential(*blocks)
        if global_pool == "none":
            self.pool: nn.Module = nn.Flatten()
            width = ch * size * size
        else:
            gp = nn.AdaptiveMaxPool2d(1) if global_pool == "max" else nn.AdaptiveAvgPool2d(1)
            self.pool = nn.Sequential(gp, nn.Flatten())
            width = ch
        hidden: list[nn.Module] = []
        for units in fc:
            hidden += [nn.Linear(width, int(units)), activation(act)]
            if fc_dropout > 0:
                hidden.append(nn.Dropout(fc_dropout))
            width = int(units)
        self.fc = nn.Sequential(*hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)
        mark_head(self, "head")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        return self.head(self.dropout(self.fc(self.pool(self.features(x)))))


@register_model("convnet")
def convnet(
    num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0,
    channels: Sequence[int] = (32, 64),
    kernel: int | list[int] = 3,
    stride: int | list[int] = 1,
    padding: int | str | list[int | str] = "same",
    pool: str | list[str] = "max",
    pool_size: int = 2,
    batch_norm: bool | list[bool] = True,
    activation: str = "relu",
    conv_dropout: float | list[float] = 0.0,
    global_pool: str = "none",
    fc: Sequence[int] = (),
    fc_dropout: float = 0.0,
) -> nn.Module:
    """A stack of conv blocks (one entry of `channels` per block; per-block lists or scalars) and an FC head."""
    if not channels:
        raise ModelError("model.options.channels: needs at least one conv layer")
    choose(global_pool, POOLS, "global_pool")
    layers = _layers(channels, kernel, stride, padding, pool, batch_norm, conv_dropout)
    require_size("convnet", image_size, _min_size(layers, pool_size), "each conv/pool must keep at least 1x1")
    return ConvNet(layers, in_channels, image_size, num_classes, activation, pool_size, global_pool, fc,
                   fc_dropout, dropout)


@register_model("vgg-small")
def vgg_small(
    num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0,
    widths: Sequence[int] = (16, 32, 64),
    convs_per_stage: int = 2,
    fc: Sequence[int] = (100,),
    batch_norm: bool = True,
    activation: str = "relu",
    conv_dropout: float = 0.0,
    fc_dropout: float = 0.0,
) -> nn.Module:
    """VGG-style: stages of `convs_per_stage` 3x3 convs, a 2x2 max-pool after each stage, flatten, FC layers."""
    if not widths or convs_per_stage < 1:
        raise ModelError("model.options.widths: needs at least one stage of at least one conv")
    channels = [w for w in widths for _ in range(convs_per_stage)]
    pools = ["max" if (i + 1) % convs_per_stage == 0 else "none" for i in range(len(channels))]
    layers = _layers(channels, 3, 1, "same", pools, batch_norm, conv_dropout)
    require_size("vgg-small", image_size, 2 ** len(widths), f"{len(widths)} stages each halve the size")
    return ConvNet(layers, in_channels, image_size, num_classes, activation, 2, "none", fc, fc_dropout, dropout)
