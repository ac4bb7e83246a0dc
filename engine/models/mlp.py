"""`mlp`: fully connected layers on flattened pixels; no hidden layers is logistic regression."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from engine.models.layers import activation as make_activation
from engine.models.layers import choose, mark_head, per_layer
from engine.models.registry import register_model

BN_PLACES = ("none", "before", "after")


class MLP(nn.Module):
    """Flatten -> [Linear -> (BN) -> act -> (BN) -> (dropout)] * hidden -> dropout -> Linear head."""

    def __init__(
        self, in_features: int, num_classes: int, hidden: Sequence[int], act: str,
        bn_places: Sequence[str], hidden_dropout: Sequence[float], dropout: float,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for units, place, drop in zip(hidden, bn_places, hidden_dropout):
            layers.append(nn.Linear(width, int(units), bias=place != "before"))
            if place == "before":
                layers.append(nn.BatchNorm1d(int(units)))
            layers.append(make_activation(act))
            if place == "after":
                layers.append(nn.BatchNorm1d(int(units)))
            if drop > 0:
                layers.append(nn.Dropout(drop))
            width = int(units)
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)
        mark_head(self, "head")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        return self.head(self.dropout(self.body(x)))


@register_model("mlp")
def mlp(
    num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0,
    hidden: Sequence[int] = (128,),
    activation: str = "relu",
    batch_norm: str | Sequence[str] = "none",
    hidden_dropout: float | Sequence[float] = 0.0,
) -> nn.Module:
    """Hidden layer widths, activation, batch-norm per layer (none/before/after the activation), dropout."""
    n = len(hidden)
    places = [choose(p, BN_PLACES, f"batch_norm[{i}]") for i, p in enumerate(per_layer(batch_norm, n, "batch_norm"))]
    drops = [float(d) for d in per_layer(hidden_dropout, n, "hidden_dropout")]
    make_activation(activation)  # reject an unknown name even with no hidden layer
    return MLP(in_channels * image_size * image_size, num_classes, hidden, activation, places, drops, dropout)
