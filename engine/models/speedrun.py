"""`speedrun`: an airbench-style CIFAR-10 net (Keller Jordan's airbench94) with a data-whitened first conv."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from engine.errors import ModelError
from engine.models.layers import activation, mark_head, require_size
from engine.models.registry import register_model


class ConvGroup(nn.Module):
    """conv -> 2x2 max-pool -> BN -> act -> conv -> BN -> act (airbench's ConvGroup)."""

    def __init__(self, in_ch: int, out_ch: int, act: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = nn.BatchNorm2d(out_ch)
        self.act1 = activation(act)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_ch)
        self.act2 = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Downsample by 2 and transform."""
        x = self.act1(self.norm1(self.pool(self.conv1(x))))
        return self.act2(self.norm2(self.conv2(x)))


class SpeedrunNet(nn.Module):
    """Whitening conv (frozen weights, trained bias), three conv groups, global max-pool, scaled linear head."""

    def __init__(self, in_channels: int, num_classes: int, widths: Sequence[int], whiten_kernel: int,
                 act: str, scale: float, dropout: float, train_whiten: bool) -> None:
        super().__init__()
        whiten_width = 2 * in_channels * whiten_kernel * whiten_kernel
        self.whiten = nn.Conv2d(in_channels, whiten_width, whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad_(train_whiten)
        self.whiten_act = activation(act)
        groups: list[nn.Module] = []
        ch = whiten_width
        for width in widths:
            groups.append(ConvGroup(ch, int(width), act))
            ch = int(width)
        self.groups = nn.Sequential(*groups)
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(ch, num_classes, bias=False)
        self.scale = scale
        mark_head(self, "head")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        x = self.groups(self.whiten_act(self.whiten(x)))
        return self.head(self.dropout(self.pool(x))) * self.scale

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4, max_images: int = 5000) -> None:
        """Set the first conv to the whitening transform of the training images' patches (and its negation)."""
        k = self.whiten.kernel_size[0]
        c = images.shape[1]
        x = images[:max_images].to(device=self.whiten.weight.device, dtype=torch.float32)
        patches = x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        cov = (patches.T @ patches / patches.shape[0]).double().cpu()
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
        scaled = eigenvectors / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]
        weight = torch.cat([scaled, -scaled]).reshape(self.whiten.weight.shape)
        self.whiten.weight.copy_(weight.to(self.whiten.weight))


@register_model("speedrun")
def speedrun(
    num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0,
    widths: Sequence[int] = (64, 256, 256),
    whiten_kernel: int = 2,
    activation: str = "gelu",
    scale: float = 1 / 9,
    train_whiten: bool = False,
) -> nn.Module:
    """airbench-style: 2x2 whitening conv initialised from data patches, conv groups with BN and GELU."""
    if not widths:
        raise ModelError("model.options.widths: needs at least one conv group")
    minimum = 2 ** len(widths) + whiten_kernel - 1
    require_size("speedrun", image_size, minimum, f"a {whiten_kernel}x{whiten_kernel} unpadded conv and "
                 f"{len(widths)} 2x2 max-pools")
    return SpeedrunNet(in_channels, num_classes, widths, whiten_kernel, activation, scale, dropout, train_whiten)
