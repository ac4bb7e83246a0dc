"""Combining predictions (TTA views, ensemble members) and the classification metrics computed from them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from engine.errors import ConfigError

COMBINES = ("logits", "probs", "vote")
PROB_FLOOR = 1e-12  # log-probabilities never reach -inf, so the loss of a confident mistake stays finite
VOTE_TIE_WEIGHT = 0.5  # mean probability (<= 1) scaled below one vote: it only orders classes with equal votes


@dataclass
class Combined:
    """Predictions combined over M sources: `scores` rank the classes, `log_probs` give the loss."""

    scores: torch.Tensor     # (N, C): argmax is the prediction; mean logits for combine=logits
    log_probs: torch.Tensor  # (N, C): log of the combined class probabilities

    @property
    def predictions(self) -> torch.Tensor:
        """Predicted class per sample; exact ties go to the lowest class index (torch.argmax's rule)."""
        return self.scores.argmax(1)


def combine(stack: torch.Tensor, how: str) -> Combined:
    """Combine logits stacked as (M, N, C) over the first axis.

    logits: mean logits; probs: mean softmax probabilities; vote: majority of the M argmax predictions, ties
    broken by the higher mean probability, then by the lower class index (deterministic, order-free).
    """
    if how not in COMBINES:
        raise ConfigError(f"eval.combine: {how!r} is not allowed; expected one of {', '.join(COMBINES)}")
    if stack.ndim != 3 or stack.shape[0] == 0:
        raise ValueError(f"expected logits shaped (M, N, C) with M >= 1, got {tuple(stack.shape)}")
    stack = stack.float()
    if how == "logits":
        mean_logits = stack.mean(0)
        return Combined(mean_logits, F.log_softmax(mean_logits, dim=1))
    mean_probs = stack.softmax(dim=2).mean(0)
    log_probs = mean_probs.clamp_min(PROB_FLOOR).log()
    if how == "probs":
        return Combined(log_probs, log_probs)
    votes = F.one_hot(stack.argmax(2), stack.shape[2]).sum(0).float()
    return Combined(votes + VOTE_TIE_WEIGHT * mean_probs, log_probs)


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_scores(matrix: torch.Tensor, classes: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class from a confusion matrix (0 where undefined)."""
    m = matrix.double()
    true_pos = m.diagonal()
    predicted = m.sum(0)
    support = m.sum(1)
    precision = torch.where(predicted > 0, true_pos / predicted.clamp_min(1), torch.zeros_like(true_pos))
    recall = torch.where(support > 0, true_pos / support.clamp_min(1), torch.zeros_like(true_pos))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(denom))
    return [{"class": name, "precision": p, "recall": r, "f1": f, "support": int(s)}
            for name, p, r, f, s in zip(classes, precision.tolist(), recall.tolist(), f1.tolist(), support.tolist())]


def most_confused(matrix: torch.Tensor, classes: list[str], top: int = 10) -> list[dict[str, Any]]:
    """The largest off-diagonal cells: (true, predicted, count), biggest first, ties by class order."""
    counts = matrix.clone()
    counts.fill_diagonal_(0)
    flat = counts.flatten()
    order = sorted(((-int(v), i) for i, v in enumerate(flat.tolist()) if v > 0))[:top]
    c = len(classes)
    return [{"true": classes[i // c], "predicted": classes[i % c], "count": -neg} for neg, i in order]


def classification_metrics(combined: Combined, labels: torch.Tensor, classes: list[str]) -> dict[str, Any]:
    """Accuracy, top-5, loss, per-class precision/recall/F1, the confusion matrix and the most confused pairs.

    `macro_f1` is the mean F1 over every class of the model, a class with no images and no predictions counting
    as 0. sklearn's `f1_score(average="macro")` averages only the classes present in the labels or predictions;
    `f1_score(..., labels=range(C), average="macro", zero_division=0)` gives ours.
    """
    num_classes = combined.scores.shape[1]
    if num_classes != len(classes):
        raise ValueError(f"{num_classes} score columns but {len(classes)} class names")
    labels = labels.to(combined.scores.device).long()
    n = int(labels.shape[0])
    if n == 0:
        return {"count": 0, "accuracy": math.nan, "top5": math.nan, "loss": math.nan}
    predictions = combined.predictions
    k = min(5, num_classes)
    top_k = combined.scores.topk(k, dim=1).indices
    loss = F.nll_loss(combined.log_probs, labels)
    values = torch.stack([(predictions == labels).double().mean(), (top_k == labels[:, None]).any(1).double().mean(),
                          loss.double()]).tolist()
    matrix = confusion_matrix(labels, predictions, num_classes).cpu()
    per_class = per_class_scores(matrix, classes)
    return {
        "count": n, "accuracy": values[0], "top5": values[1], "top_k": k, "loss": values[2],
        "macro_f1": sum(row["f1"] for row in per_class) / num_classes,
        "per_class": per_class, "confusion": matrix.tolist(), "most_confused": most_confused(matrix, classes),
    }
