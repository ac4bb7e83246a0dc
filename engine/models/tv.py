"""Torchvision ResNets and EfficientNets, adaptable to small images (`small_input`, `stride1_stages`): their
registration; engine.models.tv_build builds them (torchvision is imported only then)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from engine.models.registry import register_model

RESIDUAL_DROPS = ("none", "shakedrop", "stochastic_depth")
RESNETS = ("resnet18", "resnet34", "resnet50")
EFFICIENTNETS = tuple(f"efficientnet_b{i}" for i in range(5)) + ("efficientnet_v2_s",)


def _resnet_builder(arch: str) -> Callable[..., nn.Module]:
    def builder(
        num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0,
        small_input: bool = False,
        stride1_stages: int = 0,
        stem_kernel: int = 3,
        residual_drop: str = "none",
        drop_rate: float = 0.5,
    ) -> nn.Module:
        from engine.models.tv_build import build_resnet

        return build_resnet(arch, num_classes, in_channels, image_size, dropout, small_input, stride1_stages,
                            stem_kernel, residual_drop, drop_rate)

    builder.__doc__ = (f"torchvision {arch}; small_input: stem_kernel stride-1 stem and no max-pool; "
                       "stride1_stages: first N of layer2..4 at stride 1; residual_drop at up to drop_rate.")
    return builder


def _efficientnet_builder(arch: str) -> Callable[..., nn.Module]:
    def builder(
        num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0,
        small_input: bool = False,
        stride1_stages: int = 0,
        residual_drop: str = "stochastic_depth",
        drop_rate: float = 0.2,
        shakedrop_stages: list[int] | None = None,
    ) -> nn.Module:
        from engine.models.tv_build import build_efficientnet

        return build_efficientnet(arch, num_classes, in_channels, image_size, dropout, small_input,
                                  stride1_stages, residual_drop, drop_rate, shakedrop_stages)

    builder.__doc__ = (f"torchvision {arch}; small_input: stride-1 stem; stride1_stages: first N stride-2 "
                       "stages at stride 1; residual_drop (per block, rising linearly to drop_rate); "
                       "shakedrop_stages: the stages (1..N) given ShakeDrop, the others keep stochastic depth "
                       "(default: every stage).")
    return builder


for _arch in RESNETS:
    register_model(_arch)(_resnet_builder(_arch))
for _arch in EFFICIENTNETS:
    register_model(_arch)(_efficientnet_builder(_arch))
