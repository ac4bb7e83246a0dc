"""`inception-small`: a conv stem and GoogLeNet-style inception blocks for 32 px images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from engine.errors import ModelError
from engine.models.layers import PooledClassifier, conv_bn_act, require_size
from engine.models.registry import register_model

# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection) output channels of each block.
DEFAULT_BLOCKS = (
    (32, 48, 64, 8, 16, 16),
    (64, 64, 96, 16, 48, 32),
    (96, 64, 128, 16, 48, 64),
    (112, 96, 128, 16, 48, 48),
)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->5x5; 3x3 max-pool->1x1) concatenated on channels."""

    def __init__(self, in_ch: int, widths: Sequence[int], act: str) -> None:
        super().__init__()
        c1, c3r, c3, c5r, c5, cp = (int(w) for w in widths)
        self.branch1 = conv_bn_act(in_ch, c1, 1, act=act)
        self.branch3 = nn.Sequential(conv_bn_act(in_ch, c3r, 1, act=act), conv_bn_act(c3r, c3, 3, act=act))
        self.branch5 = nn.Sequential(conv_bn_act(in_ch, c5r, 1, act=act), conv_bn_act(c5r, c5, 5, act=act))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn_act(in_ch, cp, 1, act=act))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the branch outputs."""
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1)


class InceptionNet(PooledClassifier):
    """Stem, inception blocks with 2x2 max-pools after the chosen ones, global average pool, head."""

    def __init__(
        self, in_channels: int, num_classes: int, stem: int, blocks: Sequence[Sequence[int]],
        pool_after: Sequence[int], act: str, dropout: float,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(in_channels, stem, 3, act=act)]
        ch = stem
        for i, widths in enumerate(blocks):
            block = InceptionBlock(ch, widths, act)
            layers.append(block)
            ch = block.out_channels
            if i in pool_after:
                layers.append(nn.MaxPool2d(2))
        self.attach(nn.Sequential(*layers), ch, num_classes, dropout)


@register_model("inception-small")
def inception_small(
    num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0,
    stem_channels: int = 64,
    blocks: Sequence[Sequence[int]] = DEFAULT_BLOCKS,
    pool_after: Sequence[int] = (0, 1, 2),
    activation: str = "relu",
) -> nn.Module:
    """Inception blocks, each a list [1x1, 3x3-reduce, 3x3, 5x5-reduce, 5x5, pool-proj] of channel counts."""
    for i, widths in enumerate(blocks):
        if len(widths) != 6:
            raise ModelError(f"model.options.blocks[{i}]: needs 6 channel counts, got {list(widths)}")
    if not blocks:
        raise ModelError("model.options.blocks: needs at least one inception block")
    pools = sorted({int(i) for i in pool_after if 0 <= int(i) < len(blocks)})
    require_size("inception-small", image_size, 2 ** len(pools), f"{len(pools)} 2x2 max-pools")
    return InceptionNet(in_channels, num_classes, stem_channels, blocks, pools, activation, dropout)
