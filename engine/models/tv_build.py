"""Building torchvision ResNets and EfficientNets for small images (imported only when such a model is built:
importing torchvision costs seconds at every start)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torchvision.models as tvm
from torchvision.models.resnet import BasicBlock, Bottleneck

from engine.errors import ModelError
from engine.models.layers import ShakeDrop, choose, mark_head, require_size, residual_dropper
from engine.models.tv import RESIDUAL_DROPS


class _DropBasicBlock(BasicBlock):
    """torchvision's BasicBlock with `residual_drop` (ShakeDrop / stochastic depth) on the residual branch."""

    residual_drop: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(shortcut(x) + drop(branch(x)))."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(self.residual_drop(out) + identity)


class _DropBottleneck(Bottleneck):
    """torchvision's Bottleneck with `residual_drop` on the residual branch."""

    residual_drop: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(shortcut(x) + drop(branch(x)))."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(self.residual_drop(out) + identity)


def _unstride(block: nn.Module) -> None:
    """Set every stride-2 convolution of a stage's first block to stride 1."""
    for module in block.modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)


def _new_conv(in_ch: int, like: nn.Conv2d, kernel: int, stride: int) -> nn.Conv2d:
    """A replacement stem conv with `in_ch` inputs, He-initialised like torchvision does."""
    conv = nn.Conv2d(in_ch, like.out_channels, kernel, stride, kernel // 2, bias=like.bias is not None)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _check_common(arch: str, image_size: int, stride1_stages: int, max_stages: int, stem_factor: int,
                  residual_drop: str, drop_rate: float) -> None:
    """Validate the shared options; the minimum size is the total downsampling of stem and stages."""
    choose(residual_drop, RESIDUAL_DROPS, "residual_drop")
    if not 0 <= stride1_stages <= max_stages:
        raise ModelError(f"model.options.stride1_stages: {arch} has {max_stages} stride-2 stages after the stem; "
                         f"got {stride1_stages}")
    if not 0.0 <= drop_rate < 1.0:
        raise ModelError(f"model.options.drop_rate: must be in [0, 1), got {drop_rate}")
    factor = 2 ** (max_stages - stride1_stages) * stem_factor
    require_size(arch, image_size, factor, f"total downsampling x{factor}")


def build_resnet(
    arch: str, num_classes: int, in_channels: int, image_size: int, dropout: float, small_input: bool,
    stride1_stages: int, stem_kernel: int, residual_drop: str, drop_rate: float,
) -> nn.Module:
    """A torchvision ResNet with the small-image stem, fewer strides, dropout and residual drop applied."""
    # the stem (stride-2 conv + max-pool) downsamples x4 unless small_input; layer2..4 halve the size each
    _check_common(arch, image_size, stride1_stages, 3, 1 if small_input else 4, residual_drop, drop_rate)
    model = getattr(tvm, arch)(weights=None, num_classes=num_classes)
    if small_input:
        model.conv1 = _new_conv(in_channels, model.conv1, stem_kernel, 1)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = _new_conv(in_channels, model.conv1, 7, 2)
    for stage in (model.layer2, model.layer3, model.layer4)[:stride1_stages]:
        _unstride(stage[0])
    model.avgpool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Dropout(dropout))
    blocks = [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]
    if residual_drop != "none":
        for index, block in enumerate(blocks, start=1):
            block.residual_drop = residual_dropper(residual_drop, drop_rate * index / len(blocks))
            block.__class__ = _DropBasicBlock if isinstance(block, BasicBlock) else _DropBottleneck
    model.torchvision_arch = arch
    return mark_head(model, "fc")


def build_efficientnet(
    arch: str, num_classes: int, in_channels: int, image_size: int, dropout: float, small_input: bool,
    stride1_stages: int, residual_drop: str, drop_rate: float, shakedrop_stages: list[int] | None = None,
) -> nn.Module:
    """A torchvision EfficientNet with a stride-1 stem, fewer strides, head dropout and residual drop (ShakeDrop
    only in `shakedrop_stages`, numbered 1..N over the blocks' stages, when given)."""
    _check_common(arch, image_size, stride1_stages, 4, 1 if small_input else 2, residual_drop, drop_rate)
    depth_prob = 0.0 if residual_drop == "none" else drop_rate
    model = getattr(tvm, arch)(weights=None, num_classes=num_classes, dropout=dropout,
                               stochastic_depth_prob=depth_prob)
    stem: nn.Conv2d = model.features[0][0]
    if small_input or in_channels != 3:
        model.features[0][0] = _new_conv(in_channels, stem, 3, 1 if small_input else 2)
    strided = [stage for stage in model.features[1:-1]
               if any(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in stage[0].modules())]
    for stage in strided[:stride1_stages]:
        _unstride(stage[0])
    if residual_drop == "shakedrop":
        for stage in _chosen_stages(arch, list(model.features[1:-1]), shakedrop_stages):
            for module in stage.modules():
                if hasattr(module, "stochastic_depth"):
                    module.stochastic_depth = ShakeDrop(module.stochastic_depth.p)
    model.torchvision_arch = arch
    return mark_head(model, "classifier")


def _chosen_stages(arch: str, stages: list[nn.Module], numbers: list[int] | None) -> list[nn.Module]:
    """The stages numbered 1..N in `numbers` (None: all of them); a number out of range is a ModelError."""
    if numbers is None:
        return stages
    wrong = [n for n in numbers if not isinstance(n, int) or not 1 <= n <= len(stages)]
    if wrong:
        raise ModelError(f"model.options.shakedrop_stages: {arch} has stages 1..{len(stages)}; got {wrong[0]!r}")
    return [stages[n - 1] for n in sorted(set(numbers))]
