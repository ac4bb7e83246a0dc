"""Building blocks shared by the model builders: activations, option checks, ShakeDrop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.nn as nn

from engine.errors import ModelError, did_you_mean

T = TypeVar("T")

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": nn.GELU,
    "silu": lambda: nn.SiLU(inplace=True),
    "mish": lambda: nn.Mish(inplace=True),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def activation(name: str, key: str = "model.options.activation") -> nn.Module:
    """A fresh activation module by name; ModelError naming `key` for an unknown one."""
    if name not in ACTIVATIONS:
        raise ModelError(
            f"{key}: unknown activation {name!r}{did_you_mean(name, ACTIVATIONS)}; "
            f"choose one of {', '.join(ACTIVATIONS)}"
        )
    return ACTIVATIONS[name]()


def per_layer(value: T | Sequence[T], count: int, key: str) -> list[T]:
    """Broadcast a scalar option to `count` layers, or check that a list has exactly `count` entries."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ModelError(f"model.options.{key}: needs {count} entries (one per layer), got {len(value)}")
        return list(value)
    return [value] * count  # type: ignore[list-item]


def choose(value: Any, allowed: Sequence[str], key: str) -> str:
    """Check that an option is one of `allowed`; ModelError naming the key and the choices otherwise."""
    if value not in allowed:
        raise ModelError(
            f"model.options.{key}: {value!r} is not allowed{did_you_mean(str(value), allowed)}; "
            f"choose one of {', '.join(allowed)}"
        )
    return value


def require_size(model: str, image_size: int, minimum: int, why: str = "") -> None:
    """Raise ModelError naming the minimum input size when `image_size` is smaller than it."""
    if image_size < minimum:
        reason = f" ({why})" if why else ""
        raise ModelError(
            f"model {model!r} needs images of at least {minimum}x{minimum} pixels{reason}; "
            f"got {image_size}x{image_size}. Raise data.image_size or pick a model with less downsampling"
        )


def mark_head(model: nn.Module, path: str) -> nn.Module:
    """Record the module path of the classifier head (used for pretrained loading and freezing)."""
    model.head_name = path
    return model


class PooledClassifier(nn.Module):
    """A feature stack, then global average pool, dropout and a linear head (marked as the head)."""

    def attach(self, features: nn.Sequential, channels: int, num_classes: int, dropout: float) -> None:
        """Set the feature stack (ending with `channels` maps) and build the pooled head after it."""
        self.features = features
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)
        mark_head(self, "head")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        return self.head(self.dropout(self.pool(self.features(x))))


class _ShakeDropFunction(torch.autograd.Function):
    """Forward scales by b + alpha(1-b), backward by b + beta(1-b) (Yamada et al., 2018)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, drop_prob: float) -> torch.Tensor:
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        gate = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(1.0 - drop_prob)
        alpha = torch.empty(shape, device=x.device, dtype=x.dtype).uniform_(-1.0, 1.0)
        ctx.save_for_backward(gate)
        return x * (gate + alpha * (1.0 - gate))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (gate,) = ctx.saved_tensors
        beta = torch.empty_like(gate).uniform_(0.0, 1.0)
        return grad * (gate + beta * (1.0 - gate)), None


class ShakeDrop(nn.Module):
    """ShakeDrop regularisation of a residual branch; in eval the branch is scaled by its expectation 1-p."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Perturb per sample while training, scale by 1-p otherwise."""
        if self.drop_prob <= 0.0:
            return x
        if self.training:
            return _ShakeDropFunction.apply(x, self.drop_prob)
        return x * (1.0 - self.drop_prob)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def residual_dropper(kind: str, drop_prob: float) -> nn.Module:
    """A module applied to a residual branch: ShakeDrop, stochastic depth (per sample) or identity."""
    from torchvision.ops import StochasticDepth

    if kind == "none" or drop_prob <= 0.0:
        return nn.Identity()
    if kind == "shakedrop":
        return ShakeDrop(drop_prob)
    return StochasticDepth(drop_prob, "row")


def conv_bn_act(
    in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, padding: int | None = None,
    act: str = "relu", batch_norm: bool = True,
) -> nn.Sequential:
    """Conv (no bias when followed by BN) + optional BN + activation."""
    pad = kernel // 2 if padding is None else padding
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, pad, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(activation(act))
    return nn.Sequential(*layers)
