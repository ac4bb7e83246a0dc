"""Mixup and CutMix on a normalized batch, with soft targets; every draw stays on the device (no host sync)."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_beta(gen: torch.Generator, alpha: float, device: torch.device) -> Tensor:
    """One Beta(alpha, alpha) draw as a 0-d tensor, from two Gamma draws of the given generator."""
    gammas = torch._standard_gamma(torch.full((2,), alpha, dtype=torch.float64, device=device), generator=gen)
    lam = gammas[0] / (gammas[0] + gammas[1])
    return torch.nan_to_num(lam, nan=0.5).float()  # both gammas can underflow to 0 for tiny alpha


def cutmix_box(gen: torch.Generator, lam: Tensor, h: int, w: int) -> Tensor:
    """(H, W) mask of a box covering about 1 - lam of the image, centred uniformly and clipped."""
    dev = lam.device
    cut = torch.sqrt(1.0 - lam)
    cut_h, cut_w = (cut * h).long(), (cut * w).long()
    cy = torch.randint(0, h, (), generator=gen, device=dev)
    cx = torch.randint(0, w, (), generator=gen, device=dev)
    top, bottom = (cy - cut_h // 2).clamp(0, h), (cy + cut_h // 2).clamp(0, h)
    left, right = (cx - cut_w // 2).clamp(0, w), (cx + cut_w // 2).clamp(0, w)
    ys = torch.arange(h, device=dev).view(h, 1)
    xs = torch.arange(w, device=dev).view(1, w)
    return (ys >= top) & (ys < bottom) & (xs >= left) & (xs < right)


def mix_batch(x: Tensor, labels: Tensor, num_classes: int, gen: torch.Generator, *, mixup_alpha: float,
              cutmix_alpha: float, mix_prob: float) -> tuple[Tensor, Tensor]:
    """Mix each image with a partner from a random permutation; return the batch and (B, classes) targets.

    Per batch: with probability `mix_prob` the batch is mixed (else its targets are plain one-hot); when both
    alphas are set, mixup or cutmix is picked with equal chance. The target weight `lam` of cutmix is the
    exact uncovered fraction after clipping the box. Both candidates are computed and selected on the device.
    """
    b, _, h, w = x.shape
    dev = x.device
    perm = torch.randperm(b, generator=gen, device=dev)
    partner = x[perm]
    candidates: list[tuple[Tensor, Tensor]] = []
    if mixup_alpha > 0:
        lam = sample_beta(gen, mixup_alpha, dev)
        candidates.append((x * lam + partner * (1.0 - lam), lam))
    if cutmix_alpha > 0:
        box = cutmix_box(gen, sample_beta(gen, cutmix_alpha, dev), h, w)
        candidates.append((torch.where(box, partner, x), 1.0 - box.float().mean()))
    mixed, lam = candidates[0]
    if len(candidates) == 2:
        use_second = torch.rand((), generator=gen, device=dev) < 0.5
        mixed = torch.where(use_second, candidates[1][0], mixed)
        lam = torch.where(use_second, candidates[1][1], lam)
    if mix_prob < 1.0:
        do_mix = torch.rand((), generator=gen, device=dev) < mix_prob
        mixed = torch.where(do_mix, mixed, x)
        lam = torch.where(do_mix, lam, torch.ones_like(lam))
    # F.one_hot checks the label range on the host (a GPU sync); scatter does not.
    one_hot = torch.zeros(b, num_classes, device=dev).scatter_(1, labels.view(-1, 1), 1.0)
    targets = one_hot * lam + one_hot[perm] * (1.0 - lam)
    return mixed, targets
