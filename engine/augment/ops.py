"""Builds the validated op dicts of `engine.augment.schema` into batched functions with per-image draws.

An op function takes float images (B, C, H, W) in [0, 1] and a `Context` and returns the augmented batch
for every image; `Step` then keeps it only for the images whose coin (probability `p`) came up, with one
`torch.where`. Ops that are exact no-ops at p = 0 are skipped outright.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from engine.augment import kernels as K
from engine.augment import policies
from engine.augment.schema import normalize_ops


@dataclass
class Context:
    """What ops need besides the images: the generator and the normalization mean/std (pixels in [0, 1])."""

    gen: torch.Generator
    mean: Tensor  # (1, C, 1, 1)
    std: Tensor  # (1, C, 1, 1)


OpFn = Callable[[Tensor, Context], Tensor]


@dataclass
class Step:
    """One op with its probability: applied to each image independently with probability p."""

    p: float
    fn: OpFn
    name: str

    def __call__(self, x: Tensor, ctx: Context) -> Tensor:
        if self.p <= 0.0:
            return x
        out = self.fn(x, ctx)
        if self.p >= 1.0:
            return out
        return torch.where(K.per_image(K.coin(ctx.gen, x.shape[0], self.p, x.device)), out, x)


def compile_ops(ops: list[dict[str, Any]], source: str | None = None) -> list[Step]:
    """Validate raw op dicts and build them into steps."""
    return [build_step(op) for op in normalize_ops(ops, source)]


def build_step(op: dict[str, Any]) -> Step:
    """One normalized op dict into a Step."""
    params = {k: v for k, v in op.items() if k not in ("op", "p")}
    builder = BUILDERS.get(op["op"]) or policies.BUILDERS[op["op"]]
    return Step(p=op["p"], fn=builder(**params), name=op["op"])


def run_steps(steps: list[Step], x: Tensor, ctx: Context) -> Tensor:
    """Apply steps in order."""
    for step in steps:
        x = step(x, ctx)
    return x


def _draw(ctx: Context, x: Tensor, lo: float, hi: float) -> Tensor:
    return K.uniform(ctx.gen, x.shape[0], lo, hi, x.device)


def _flip(dim: int) -> OpFn:
    return lambda x, ctx: x.flip(dim)


def _crop(padding: int, padding_mode: str) -> OpFn:
    def fn(x: Tensor, ctx: Context) -> Tensor:
        n = x.shape[0]
        dx = torch.randint(-padding, padding + 1, (n,), generator=ctx.gen, device=x.device)
        dy = torch.randint(-padding, padding + 1, (n,), generator=ctx.gen, device=x.device)
        return K.shift(x, dx, dy, padding_mode)
    return fn


def _translate(fraction: tuple[float, float], padding_mode: str) -> OpFn:
    def fn(x: Tensor, ctx: Context) -> Tensor:
        h, w = x.shape[-2:]
        max_dx, max_dy = fraction[0] * w, fraction[1] * h
        dx = torch.round(_draw(ctx, x, -max_dx, max_dx))
        dy = torch.round(_draw(ctx, x, -max_dy, max_dy))
        return K.shift(x, dx, dy, padding_mode)
    return fn


def _affine(degrees: tuple[float, float], translate: tuple[float, float] = (0.0, 0.0),
            scale: tuple[float, float] = (1.0, 1.0), shear: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0),
            interpolation: str = "nearest", fill: float | None = 0.0) -> OpFn:
    def fn(x: Tensor, ctx: Context) -> Tensor:
        h, w = x.shape[-2:]
        zero = torch.zeros(x.shape[0], device=x.device)
        angle = _draw(ctx, x, *degrees)
        tx = torch.round(_draw(ctx, x, -translate[0] * w, translate[0] * w))
        ty = torch.round(_draw(ctx, x, -translate[1] * h, translate[1] * h))
        factor = _draw(ctx, x, *scale)
        sx, sy = _draw(ctx, x, shear[0], shear[1]), _draw(ctx, x, shear[2], shear[3])
        matrix = K.inverse_affine(angle, tx, ty, factor, sx, sy, zero, zero)
        return K.warp(x, matrix, interpolation, fill)
    return fn


def _rotate(degrees: tuple[float, float], interpolation: str, fill: float | None) -> OpFn:
    # RandomRotation turns counter-clockwise for positive angles, RandomAffine clockwise.
    return _affine((-degrees[1], -degrees[0]), interpolation=interpolation, fill=fill)


def _resized_crop(scale: tuple[float, float], ratio: tuple[float, float], interpolation: str) -> OpFn:
    def fn(x: Tensor, ctx: Context) -> Tensor:
        h, w = x.shape[-2:]
        top, left, bh, bw, _ = K.sample_boxes(ctx.gen, x.shape[0], h, w, scale, ratio, x.device)
        return K.crop_resize(x, top, left, bh, bw, interpolation)
    return fn


def _color_jitter(brightness: tuple[float, float], contrast: tuple[float, float],
                  saturation: tuple[float, float], hue: tuple[float, float]) -> OpFn:
    """ColorJitter with factors and the order of the four adjustments drawn per image.

    At each stage every image applies the adjustment its order names: brightness, contrast and saturation
    as one per-image blend (`kernels.enhance`), hue through HSV for the images whose stage is hue.
    """
    names = ("brightness", "contrast", "saturation", "hue")
    ranges = dict(zip(names, (brightness, contrast, saturation, hue)))
    active = [n for n in names if tuple(ranges[n]) != ((0.0, 0.0) if n == "hue" else (1.0, 1.0))]

    def fn(x: Tensor, ctx: Context) -> Tensor:
        if not active:
            return x
        n = x.shape[0]
        factors = torch.stack([_draw(ctx, x, *ranges[name]) for name in active], 1)  # (B, k)
        order = torch.rand(n, len(active), generator=ctx.gen, device=x.device).argsort(1)
        for stage in range(len(active)):
            which = order[:, stage]
            factor = factors.gather(1, which.view(-1, 1)).squeeze(1)
            is_ = {name: which == j for j, name in enumerate(active)}
            blend_factor = torch.where(is_.get("hue", torch.zeros_like(which, dtype=torch.bool)), 1.0, factor)
            x = K.enhance(x, blend_factor,
                          is_["saturation"].to(x.dtype) if "saturation" in is_ else None,
                          is_["contrast"].to(x.dtype) if "contrast" in is_ else None)
            if "hue" in is_:
                x = torch.where(K.per_image(is_["hue"]), K.adjust_hue(x, factor), x)
        return x
    return fn


def _grayscale() -> OpFn:
    return lambda x, ctx: K.grayscale(x).expand_as(x)


def _gaussian_blur(kernel_size: int, sigma: tuple[float, float]) -> OpFn:
    return lambda x, ctx: K.gaussian_blur(x, kernel_size, _draw(ctx, x, *sigma))


def _solarize(threshold: float) -> OpFn:
    return lambda x, ctx: torch.where(x >= threshold, 1.0 - x, x)


def _posterize(bits: int) -> OpFn:
    return lambda x, ctx: K.posterize(x, torch.full((x.shape[0],), float(bits), device=x.device))


def _sharpness(factor: float) -> OpFn:
    return lambda x, ctx: K.blend(x, K.smoothed(x), torch.full((x.shape[0],), factor, device=x.device))


def _fill_value(value: Any, x: Tensor, ctx: Context) -> Tensor:
    """The erase fill: the normalization mean, noise (normal in normalized space) or a constant."""
    if value == "mean":
        return ctx.mean.to(x.dtype).expand_as(x)
    if value == "random":
        noise = torch.randn(x.shape, generator=ctx.gen, device=x.device, dtype=x.dtype)
        return noise * ctx.std + ctx.mean
    return torch.full_like(x, float(value))


def _erase(scale: tuple[float, float], ratio: tuple[float, float], value: Any) -> OpFn:
    def fn(x: Tensor, ctx: Context) -> Tensor:
        n, _, h, w = x.shape
        top, left, bh, bw, found = K.sample_boxes(ctx.gen, n, h, w, scale, ratio, x.device, erase=True)
        mask = K.box_mask(h, w, top, left, bh, bw) & K.per_image(found)
        return torch.where(mask, _fill_value(value, x, ctx), x)
    return fn


def _cutout(fraction: float, value: Any) -> OpFn:
    def fn(x: Tensor, ctx: Context) -> Tensor:
        n, _, h, w = x.shape
        side_h, side_w = max(1, round(fraction * h)), max(1, round(fraction * w))
        cy = torch.randint(0, h, (n,), generator=ctx.gen, device=x.device)
        cx = torch.randint(0, w, (n,), generator=ctx.gen, device=x.device)
        top, left = cy - side_h // 2, cx - side_w // 2
        mask = K.box_mask(h, w, top, left, torch.full_like(top, side_h), torch.full_like(left, side_w))
        return torch.where(mask, _fill_value(value, x, ctx), x)
    return fn


def _choice(ops: list[dict[str, Any]], weights: list[float] | None) -> OpFn:
    """Exactly one sub-op per image, picked by weight; each sub-op still honours its own p."""
    steps = [build_step(op) for op in ops]
    w = torch.tensor(weights if weights is not None else [1.0] * len(steps), dtype=torch.float64)
    bounds = K.DeviceCache((w.cumsum(0) / w.sum())[:-1].float())

    def fn(x: Tensor, ctx: Context) -> Tensor:
        pick = torch.bucketize(torch.rand(x.shape[0], generator=ctx.gen, device=x.device),
                               bounds.on(x.device), right=True)
        out = x
        for k, step in enumerate(steps):
            out = torch.where(K.per_image(pick == k), step(x, ctx), out)
        return out
    return fn


def _sequence(ops: list[dict[str, Any]]) -> OpFn:
    steps = [build_step(op) for op in ops]
    return lambda x, ctx: run_steps(steps, x, ctx)


BUILDERS: dict[str, Callable[..., OpFn]] = {
    "hflip": lambda: _flip(3),
    "vflip": lambda: _flip(2),
    "crop": _crop,
    "translate": _translate,
    "rotate": _rotate,
    "affine": _affine,
    "resized_crop": _resized_crop,
    "color_jitter": _color_jitter,
    "grayscale": _grayscale,
    "gaussian_blur": _gaussian_blur,
    "solarize": _solarize,
    "posterize": _posterize,
    "sharpness": _sharpness,
    "autocontrast": lambda: lambda x, ctx: K.autocontrast(x),
    "equalize": lambda: lambda x, ctx: K.equalize(x),
    "invert": lambda: lambda x, ctx: 1.0 - x,
    "erase": _erase,
    "cutout": _cutout,
    "choice": _choice,
    "sequence": _sequence,
}
