"""Model size and cost: parameter count and multiply-accumulates per image."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

# Layers whose multiply-accumulates are counted: every model of the zoo spends its MACs in them. (torch's
# FlopCounterMode gives the same totals, but any dispatch mode imports torch._dynamo: ~3 s at every start.)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_params(model: nn.Module) -> int:
    """Number of parameters, trainable and frozen."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, in_channels: int, image_size: int) -> int:
    """Multiply-accumulates of one forward pass on a single image (eval mode), in convolutions and linear
    layers: a convolution's output elements × its weights per output; a linear layer's outputs × its inputs."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    total = [0]

    def count(module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            per_output = module.weight[0].numel() if isinstance(module, _CONVS) else module.in_features
            total[0] += output.numel() * per_output

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (*_CONVS, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total[0]
