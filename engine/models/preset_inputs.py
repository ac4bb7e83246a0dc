"""The intended input of each built-in model preset, for reporting its parameter count."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

from engine.models.measure import count_params
from engine.models.registry import create_model

if TYPE_CHECKING:
    from engine.config import ModelConfig

MNIST = (10, 1, 28)
CIFAR10 = (10, 3, 32)
TINY200 = (200, 3, 40)  # the 200-class 40x40 data set of USERS.md section 1

# preset name -> (num_classes, in_channels, image_size)
PRESET_INPUT: dict[str, tuple[int, int, int]] = {
    "small-cnn": (10, 1, 8),
    "mnist-logreg": MNIST,
    "mnist-mlp2-sigmoid": MNIST,
    "mnist-mlp2-relu": MNIST,
    "mnist-mlp2-bn": MNIST,
    "mnist-mlp2-bn-after": MNIST,
    "mnist-mlp3-bn": MNIST,
    "cifar-conv1": CIFAR10,
    "cifar-conv1-pool": CIFAR10,
    "cifar-conv1-bn": CIFAR10,
    "cifar-conv2": CIFAR10,
    "cifar-conv3": CIFAR10,
    "cifar-vgg6": CIFAR10,
    "cifar-inception4": CIFAR10,
    "resnet9": CIFAR10,
    "speedrun": CIFAR10,
    "basicblocknet": TINY200,
    "resnet18-small": TINY200,
    "resnet50-small": TINY200,
    "efficientnet-v2-s-small": TINY200,
    "efficientnet-b4-pretrained": (20, 3, 224),
}
DEFAULT_INPUT = CIFAR10


def preset_param_count(
    model_cfg: ModelConfig, num_classes: int = 10, in_channels: int = 3, image_size: int = 32
) -> int:
    """Parameter count of a model config at the given input, built on the meta device (no memory, fast)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # init functions warn that meta tensors are skipped
        with torch.device("meta"):
            model = create_model(model_cfg.name, num_classes, in_channels, image_size, model_cfg.dropout,
                                 **model_cfg.options)
    return count_params(model)
