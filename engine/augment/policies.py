"""RandAugment, AutoAugment (CIFAR-10, ImageNet, SVHN policies) and TrivialAugment Wide, drawn per image.

torchvision's transforms draw one op for the whole tensor they get, from the global RNG. Here every image
draws its own op, sign and magnitude from the trainer's generator, and the batch is transformed in one pass
per policy layer: all geometric ops share one `grid_sample` with per-image matrices, colour ops are
per-image blends, and each image keeps only the result of the op it drew (`torch.where`). Magnitude tables,
sign rules, shear centre and the rounding of translations follow torchvision 0.29.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from engine.augment import kernels as K

if TYPE_CHECKING:
    from engine.augment.ops import Context

OP_NAMES = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
            "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize", "Invert")
OP_ID = {name: i for i, name in enumerate(OP_NAMES)}
SIGNED = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness")
RAND_SPACE = OP_NAMES[:-1]  # RandAugment and TrivialAugment Wide: everything but Invert

_AA = {  # (op, probability, magnitude bin) pairs; bin -1 where the op has no magnitude
    "imagenet": "Posterize .4 8 Rotate .6 9|Solarize .6 5 AutoContrast .6 -1|Equalize .8 -1 Equalize .6 -1|"
                "Posterize .6 7 Posterize .6 6|Equalize .4 -1 Solarize .2 4|Equalize .4 -1 Rotate .8 8|"
                "Solarize .6 3 Equalize .6 -1|Posterize .8 5 Equalize 1 -1|Rotate .2 3 Solarize .6 8|"
                "Equalize .6 -1 Posterize .4 6|Rotate .8 8 Color .4 0|Rotate .4 9 Equalize .6 -1|"
                "Equalize 0 -1 Equalize .8 -1|Invert .6 -1 Equalize 1 -1|Color .6 4 Contrast 1 8|"
                "Rotate .8 8 Color 1 2|Color .8 8 Solarize .8 7|Sharpness .4 7 Invert .6 -1|"
                "ShearX .6 5 Equalize 1 -1|Color .4 0 Equalize .6 -1|Equalize .4 -1 Solarize .2 4|"
                "Solarize .6 5 AutoContrast .6 -1|Invert .6 -1 Equalize 1 -1|Color .6 4 Contrast 1 8|"
                "Equalize .8 -1 Equalize .6 -1",
    "cifar10": "Invert .1 -1 Contrast .2 6|Rotate .7 2 TranslateX .3 9|Sharpness .8 1 Sharpness .9 3|"
               "ShearY .5 8 TranslateY .7 9|AutoContrast .5 -1 Equalize .9 -1|ShearY .2 7 Posterize .3 7|"
               "Color .4 3 Brightness .6 7|Sharpness .3 9 Brightness .7 9|Equalize .6 -1 Equalize .5 -1|"
               "Contrast .6 7 Sharpness .6 5|Color .7 7 TranslateX .5 8|Equalize .3 -1 AutoContrast .4 -1|"
               "TranslateY .4 3 Sharpness .2 6|Brightness .9 6 Color .2 8|Solarize .5 2 Invert 0 -1|"
               "Equalize .2 -1 AutoContrast .6 -1|Equalize .2 -1 Equalize .6 -1|Color .9 9 Equalize .6 -1|"
               "AutoContrast .8 -1 Solarize .2 8|Brightness .1 3 Color .7 0|Solarize .4 5 AutoContrast .9 -1|"
               "TranslateY .9 9 TranslateY .7 9|AutoContrast .9 -1 Solarize .8 3|Equalize .8 -1 Invert .1 -1|"
               "TranslateY .7 9 AutoContrast .9 -1",
    "svhn": "ShearX .9 4 Invert .2 -1|ShearY .9 8 Invert .7 -1|Equalize .6 -1 Solarize .6 6|"
            "Invert .9 -1 Equalize .6 -1|Equalize .6 -1 Rotate .9 3|ShearX .9 4 AutoContrast .8 -1|"
            "ShearY .9 8 Invert .4 -1|ShearY .9 5 Solarize .2 6|Invert .9 -1 AutoContrast .8 -1|"
            "Equalize .6 -1 Rotate .9 3|ShearX .9 4 Solarize .3 3|ShearY .8 8 Invert .7 -1|"
            "Equalize .9 -1 TranslateY .6 6|Invert .9 -1 Equalize .6 -1|Contrast .3 3 Rotate .8 4|"
            "Invert .8 -1 TranslateY 0 2|ShearY .7 6 Solarize .4 8|Invert .6 -1 Rotate .8 4|"
            "ShearY .3 7 TranslateX .9 3|ShearX .1 6 Invert .6 -1|Solarize .7 2 TranslateY .6 7|"
            "ShearY .8 4 Invert .8 -1|ShearX .7 9 TranslateY .8 3|ShearY .8 5 AutoContrast .7 -1|"
            "ShearX .7 2 Invert .1 -1",
}


def policy_table(policy: str) -> tuple[Tensor, Tensor, Tensor]:
    """AutoAugment sub-policies as (op ids, probabilities, magnitude bins), each shaped (25, 2)."""
    ops, probs, bins = [], [], []
    for sub in _AA[policy].split("|"):
        words = sub.split()
        ops.append([OP_ID[words[0]], OP_ID[words[3]]])
        probs.append([float(words[1]), float(words[4])])
        bins.append([max(0, int(words[2])), max(0, int(words[5]))])
    return torch.tensor(ops), torch.tensor(probs), torch.tensor(bins)


def magnitude_table(wide: bool, bins: int, h: int, w: int) -> Tensor:
    """(15, bins) magnitudes per op id: torchvision's standard space, or TrivialAugment's wide one.

    Built in float32 exactly as torchvision builds them (`torch.linspace(0, end, bins)`), since the float32
    values decide edge cases: TrivialAugment's translate bin 15 is 15.999999 (a 15-pixel shift) and Solarize
    bins 16, 18 and 24 of 31 lie a hair above 119/255, 102/255 and 51/255 (those levels stay as they are).
    """
    def span(end: float) -> Tensor:
        return torch.linspace(0.0, end, bins, dtype=torch.float32)

    table = torch.zeros(len(OP_NAMES), bins, dtype=torch.float64)
    shear, rotate, enhance = (0.99, 135.0, 0.99) if wide else (0.3, 30.0, 0.9)
    table[OP_ID["ShearX"]] = table[OP_ID["ShearY"]] = span(shear)
    table[OP_ID["TranslateX"]] = span(32.0 if wide else 150.0 / 331.0 * w)
    table[OP_ID["TranslateY"]] = span(32.0 if wide else 150.0 / 331.0 * h)
    table[OP_ID["Rotate"]] = span(rotate)
    for name in ("Brightness", "Color", "Contrast", "Sharpness"):
        table[OP_ID[name]] = span(enhance)
    table[OP_ID["Posterize"]] = (8 - torch.arange(bins) / ((bins - 1) / (6 if wide else 4))).round()
    table[OP_ID["Solarize"]] = torch.linspace(1.0, 0.0, bins, dtype=torch.float32)
    return table


# Columns of the per-(op, magnitude bin, sign) parameter table.
THETA, GEO, FACTOR, W_GRAY, W_MEAN, W_SMOOTH, SOLARIZE, POSTERIZE, STEP, AUTOCONTRAST, EQUALIZE, INVERT = (
    slice(0, 6), 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
COLUMNS = 17


def param_table(magnitudes: Tensor, h: int, w: int) -> Tensor:
    """Every op's kernel parameters per (op, bin, sign): row (op * bins + bin) * 2 + negated, 17 columns.

    Built once per image size so that a batch gathers its parameters in one indexing op instead of
    computing matrices and factors per step.
    """
    n_ops, bins = magnitudes.shape
    op = torch.arange(n_ops).repeat_interleave(bins * 2)
    signed = torch.tensor([name in SIGNED for name in OP_NAMES])[op]
    negate = torch.arange(2).repeat(n_ops * bins).bool() & signed
    mag = magnitudes.repeat_interleave(2, dim=1).flatten()
    mag = torch.where(negate, -mag, mag)
    zero, one = torch.zeros_like(mag), torch.ones_like(mag)

    def pick(name: str, value: Tensor, other: Tensor) -> Tensor:
        return torch.where(op == OP_ID[name], value, other)

    shear = torch.rad2deg(torch.atan(mag))
    is_shear = (op == OP_ID["ShearX"]) | (op == OP_ID["ShearY"])
    matrix = K.inverse_affine(  # Rotate follows F.rotate (counter-clockwise), shears pivot on the top-left
        pick("Rotate", -mag, zero), pick("TranslateX", torch.trunc(mag), zero),
        pick("TranslateY", torch.trunc(mag), zero), one, pick("ShearX", shear, zero), pick("ShearY", shear, zero),
        torch.where(is_shear, -0.5 * w * one, zero), torch.where(is_shear, -0.5 * h * one, zero))
    table = torch.zeros(len(op), COLUMNS, dtype=torch.float64)
    table[:, THETA] = K.normalized_theta(matrix, h, w).flatten(1)
    table[:, GEO] = ((op >= OP_ID["ShearX"]) & (op <= OP_ID["Rotate"])).double()
    enhancing = (op >= OP_ID["Brightness"]) & (op <= OP_ID["Sharpness"])
    table[:, FACTOR] = torch.where(enhancing, 1.0 + mag, one)
    for column, name in ((W_GRAY, "Color"), (W_MEAN, "Contrast"), (W_SMOOTH, "Sharpness"),
                         (POSTERIZE, "Posterize"), (AUTOCONTRAST, "AutoContrast"), (EQUALIZE, "Equalize"),
                         (INVERT, "Invert")):
        table[:, column] = (op == OP_ID[name]).double()
    table[:, SOLARIZE] = pick("Solarize", mag, 2.0 * one)  # a threshold above 1 changes nothing
    table[:, STEP] = torch.pow(2.0, 8.0 - pick("Posterize", mag, 8.0 * one))
    return table.float()


def apply_ops(x: Tensor, prm: Tensor, present: frozenset[str], interpolation: str,
              fill: float | None) -> Tensor:
    """Apply to each image the op whose parameters it gathered (`prm`, (B, 17)); skip ops not in `present`."""
    if present & {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}:
        warped = K.warp_theta(x, prm[:, THETA].reshape(-1, 2, 3), interpolation, fill)
        x = torch.where(K.per_image(prm[:, GEO] > 0), warped, x)
    if present & {"Brightness", "Color", "Contrast", "Sharpness"}:
        # Images that drew another op blend at factor 1: an exact identity.
        x = K.enhance(x, prm[:, FACTOR], prm[:, W_GRAY] if "Color" in present else None,
                      prm[:, W_MEAN] if "Contrast" in present else None,
                      prm[:, W_SMOOTH] if "Sharpness" in present else None)
    if "Solarize" in present:
        x = K.solarize(x, prm[:, SOLARIZE])
    if "Posterize" in present:
        x = torch.where(K.per_image(prm[:, POSTERIZE] > 0), K.posterize_step(x, prm[:, STEP]), x)
    for name, column, kernel in (("AutoContrast", AUTOCONTRAST, K.autocontrast), ("Equalize", EQUALIZE, K.equalize),
                                 ("Invert", INVERT, lambda t: 1.0 - t)):
        if name in present:
            x = torch.where(K.per_image(prm[:, column] > 0), kernel(x), x)
    return x


class _Tables:
    """Parameter table and op space per (height, width, device), built on first use."""

    def __init__(self, wide: bool, bins: int, space: tuple[str, ...] = RAND_SPACE) -> None:
        self.wide, self.bins = wide, bins
        self.space = K.DeviceCache(torch.tensor([OP_ID[n] for n in space]))
        self.cache: dict[tuple[int, int, str], Tensor] = {}

    def get(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, w = x.shape[-2:]
        key = (h, w, str(x.device))
        if key not in self.cache:
            self.cache[key] = param_table(magnitude_table(self.wide, self.bins, h, w), h, w).to(x.device)
        return self.cache[key], self.space.on(x.device)


def _gather(ctx: Context, table: Tensor, op: Tensor, level: Tensor | int, bins: int) -> Tensor:
    """Each image's parameter row for its op and magnitude bin, negated with probability 1/2."""
    negate = torch.rand(op.shape, generator=ctx.gen, device=op.device) <= 0.5
    return table[(op * bins + level) * 2 + negate.long()]


def _randaugment(num_ops: int, magnitude: int, num_magnitude_bins: int, interpolation: str,
                 fill: float | None) -> Callable:
    tables = _Tables(False, num_magnitude_bins)
    present = frozenset(RAND_SPACE)

    def fn(x: Tensor, ctx: Context) -> Tensor:
        table, ids = tables.get(x)
        for _ in range(num_ops):
            op = ids[torch.randint(0, len(ids), (x.shape[0],), generator=ctx.gen, device=x.device)]
            x = apply_ops(x, _gather(ctx, table, op, magnitude, num_magnitude_bins), present, interpolation, fill)
        return x
    return fn


def _trivialaugment(num_magnitude_bins: int, interpolation: str, fill: float | None) -> Callable:
    tables = _Tables(True, num_magnitude_bins)
    present = frozenset(RAND_SPACE)

    def fn(x: Tensor, ctx: Context) -> Tensor:
        table, ids = tables.get(x)
        n = x.shape[0]
        op = ids[torch.randint(0, len(ids), (n,), generator=ctx.gen, device=x.device)]
        level = torch.randint(0, num_magnitude_bins, (n,), generator=ctx.gen, device=x.device)
        return apply_ops(x, _gather(ctx, table, op, level, num_magnitude_bins), present, interpolation, fill)
    return fn


def _autoaugment(policy: str, interpolation: str, fill: float | None) -> Callable:
    tables = _Tables(False, 10)
    policy_ops, policy_probs, policy_bins = (K.DeviceCache(t) for t in policy_table(policy))
    present = [frozenset(OP_NAMES[int(i)] for i in policy_ops.value[:, slot]) for slot in range(2)]

    def fn(x: Tensor, ctx: Context) -> Tensor:
        table, _ = tables.get(x)
        n, dev = x.shape[0], x.device
        sub = torch.randint(0, policy_ops.value.shape[0], (n,), generator=ctx.gen, device=dev)
        ops, probs, bins = policy_ops.on(dev)[sub], policy_probs.on(dev)[sub], policy_bins.on(dev)[sub]
        for slot in range(2):
            run = torch.rand(n, generator=ctx.gen, device=dev) <= probs[:, slot]
            op = torch.where(run, ops[:, slot], torch.zeros_like(ops[:, slot]))
            x = apply_ops(x, _gather(ctx, table, op, bins[:, slot], 10), present[slot], interpolation, fill)
        return x
    return fn


BUILDERS: dict[str, Callable[..., Callable]] = {
    "randaugment": _randaugment,
    "trivialaugment": _trivialaugment,
    "autoaugment": _autoaugment,
}
