"""Small residual nets written here: `basicblocknet` and `resnet9` (the Myrtle-style CIFAR-10 net)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from engine.errors import ModelError
from engine.models.layers import (
    PooledClassifier, activation, choose, conv_bn_act, mark_head, require_size, residual_dropper,
)
from engine.models.registry import register_model

RESIDUAL_DROPS = ("none", "shakedrop", "stochastic_depth")


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN, a residual shortcut (1x1 conv + BN when channels change), then the activation."""

    def __init__(self, in_ch: int, out_ch: int, act: str, drop: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act1 = activation(act)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.residual_drop = drop
        self.shortcut: nn.Module = nn.Identity()
        if in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.act2 = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """act(shortcut(x) + drop(bn2(conv2(act(bn1(conv1(x)))))))."""
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(self.shortcut(x) + self.residual_drop(out))


class BasicBlockNet(PooledClassifier):
    """3x3 stem, stages of basic blocks each followed by a 2x2 pool, global average pool, head."""

    def __init__(
        self, in_channels: int, num_classes: int, widths: Sequence[int], blocks: int, pool: str, act: str,
        residual_drop: str, drop_rate: float, dropout: float,
    ) -> None:
        super().__init__()
        total = len(widths) * blocks
        layers: list[nn.Module] = [conv_bn_act(in_channels, int(widths[0]), 3, act=act)]
        ch, index = int(widths[0]), 0
        for stage, width in enumerate(widths):
            for _ in range(blocks):
                index += 1
                drop = residual_dropper(residual_drop, drop_rate * index / total)
                layers.append(BasicBlock(ch, int(width), act, drop))
                ch = int(width)
            if stage < len(widths) - 1:
                layers.append(nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2))
        self.attach(nn.Sequential(*layers), ch, num_classes, dropout)


@register_model("basicblocknet")
def basicblocknet(
    num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0,
    widths: Sequence[int] = (64, 128, 256),
    blocks_per_stage: int = 1,
    pool: str = "max",
    activation: str = "relu",
    residual_drop: str = "none",
    drop_rate: float = 0.0,
) -> nn.Module:
    """A small residual net: per-stage widths, blocks per stage, pooling between stages, ShakeDrop/stoch. depth."""
    if not widths or blocks_per_stage < 1:
        raise ModelError("model.options.widths: needs at least one stage of at least one block")
    choose(pool, ("max", "avg"), "pool")
    choose(residual_drop, RESIDUAL_DROPS, "residual_drop")
    require_size("basicblocknet", image_size, 2 ** (len(widths) - 1), f"{len(widths) - 1} 2x2 pools")
    return BasicBlockNet(in_channels, num_classes, widths, blocks_per_stage, pool, activation, residual_drop,
                         drop_rate, dropout)


class Residual(nn.Module):
    """x + f(x)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the body's output to its input."""
        return x + self.body(x)


class ResNet9(nn.Module):
    """Prep conv, three conv+pool layers (residual pairs after the 1st and 3rd), max-pool, scaled linear head."""

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int], act: str, scale: float,
                 dropout: float) -> None:
        super().__init__()
        w0, w1, w2, w3 = (int(w) for w in widths)

        def pair(ch: int) -> nn.Module:
            return Residual(nn.Sequential(conv_bn_act(ch, ch, act=act), conv_bn_act(ch, ch, act=act)))

        self.features = nn.Sequential(
            conv_bn_act(in_channels, w0, act=act),
            conv_bn_act(w0, w1, act=act), nn.MaxPool2d(2), pair(w1),
            conv_bn_act(w1, w2, act=act), nn.MaxPool2d(2),
            conv_bn_act(w2, w3, act=act), nn.MaxPool2d(2), pair(w3),
        )
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(w3, num_classes, bias=False)
        self.scale = scale
        mark_head(self, "head")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes), scaled by `scale`."""
        return self.head(self.dropout(self.pool(self.features(x)))) * self.scale


@register_model("resnet9")
def resnet9(
    num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0,
    widths: Sequence[int] = (64, 128, 256, 512),
    activation: str = "relu",
    scale: float = 0.125,
) -> nn.Module:
    """The Myrtle.ai ResNet-9 (DAWNBench CIFAR-10): four widths (prep, layer1, layer2, layer3), 6.6M params."""
    if len(widths) != 4:
        raise ModelError(f"model.options.widths: needs 4 widths (prep, layer1, layer2, layer3), got {list(widths)}")
    require_size("resnet9", image_size, 8, "three 2x2 max-pools")
    return ResNet9(in_channels, num_classes, widths, activation, scale, dropout)
