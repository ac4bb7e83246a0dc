"""What an augmentation op may say: names, parameters, defaults, ranges; validation without torch.

Every op in `augment.ops` is a mapping `{op: <name>, p: <probability>, ...params}`. `normalize_ops` checks one
list and returns it with every default filled in and every shorthand expanded (e.g. `degrees: 10` becomes
`(-10.0, 10.0)`), which is what the torch side (`engine.augment.ops`) builds from. This module imports no torch,
so validating a preset stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError, did_you_mean

INTERPOLATIONS = ("nearest", "bilinear")
PADDING_MODES = ("zero", "reflect", "edge")
POLICIES = ("cifar10", "imagenet", "svhn")


@dataclass(frozen=True)
class Param:
    """One op parameter: its kind (how a value is checked and expanded), default, bounds and doc."""

    kind: str  # prob, float, int, choice, range, xy, shear, value, ops, weights
    default: Any
    doc: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    expand: str = "fixed"  # how a single number becomes a range: sym (-v, v), one (1-v, 1+v), fixed (v, v)
    nullable: bool = False  # null is a value of its own (e.g. fill: null, torchvision's fill=None)


@dataclass(frozen=True)
class OpSchema:
    """One op: a one-line description, its default probability and its parameters (besides `p`)."""

    doc: str
    default_p: float
    params: dict[str, Param]


def _fill(default: float | None = 0.0) -> Param:
    """torchvision's fill: a number blends by coverage (bilinear) or fills (nearest); null only pads with zeros."""
    return Param("float", default, "value of pixels coming from outside the image, in [0, 1]; null: zero padding "
                 "without torchvision's coverage blend (fill=None)", 0.0, 1.0, nullable=True)


def _interp(default: str = "nearest") -> Param:
    return Param("choice", default, "resampling: nearest or bilinear", choices=INTERPOLATIONS)


def _nested() -> Param:
    return Param("ops", None, "the sub-ops, each a mapping {op: name, ...}")


SCHEMAS: dict[str, OpSchema] = {
    "hflip": OpSchema("mirror left-right", 0.5, {}),
    "vflip": OpSchema("mirror top-bottom", 0.5, {}),
    "crop": OpSchema("random crop of the same size from the image padded on every side (RandomCrop)", 1.0, {
        "padding": Param("int", 4, "pixels of padding on each side", 0, 4096),
        "padding_mode": Param("choice", "zero", "padding: zero, reflect or edge", choices=PADDING_MODES),
    }),
    "translate": OpSchema("random whole-pixel shift up to a fraction of the size (RandomAffine translate)", 1.0, {
        "fraction": Param("xy", (0.125, 0.125), "largest shift as a fraction of width, height (one or two values)",
                          0.0, 1.0),
        "padding_mode": Param("choice", "zero", "uncovered pixels: zero, reflect or edge", choices=PADDING_MODES),
    }),
    "rotate": OpSchema("random rotation about the centre (RandomRotation)", 1.0, {
        "degrees": Param("range", (-10.0, 10.0), "angle range in degrees; one number d means [-d, d]",
                         -360.0, 360.0, expand="sym"),
        "interpolation": _interp(), "fill": _fill(),
    }),
    "affine": OpSchema("random rotation, translation, scale and shear (RandomAffine)", 1.0, {
        "degrees": Param("range", (0.0, 0.0), "angle range in degrees; one number d means [-d, d]",
                         -360.0, 360.0, expand="sym"),
        "translate": Param("xy", (0.0, 0.0), "largest shift as a fraction of width, height", 0.0, 1.0),
        "scale": Param("range", (1.0, 1.0), "scale factor range [lo, hi]", 0.01, 100.0),
        "shear": Param("shear", (0.0, 0.0, 0.0, 0.0), "shear degrees: s, [lo, hi] (x) or [xlo, xhi, ylo, yhi]",
                       -89.0, 89.0),
        "interpolation": _interp(), "fill": _fill(),
    }),
    "resized_crop": OpSchema("random crop of random area and aspect, resized back (RandomResizedCrop)", 1.0, {
        "scale": Param("range", (0.08, 1.0), "crop area range as a fraction of the image area", 1e-4, 1.0),
        "ratio": Param("range", (3.0 / 4.0, 4.0 / 3.0), "aspect ratio range (width / height)", 1e-3, 1e3),
        "interpolation": _interp("bilinear"),
    }),
    "color_jitter": OpSchema("random brightness, contrast, saturation, hue in a per-image random order", 1.0, {
        "brightness": Param("range", (1.0, 1.0), "factor range; one number b means [1-b, 1+b]", 0.0, 100.0,
                            expand="one"),
        "contrast": Param("range", (1.0, 1.0), "factor range; one number c means [1-c, 1+c]", 0.0, 100.0,
                          expand="one"),
        "saturation": Param("range", (1.0, 1.0), "factor range; one number s means [1-s, 1+s]", 0.0, 100.0,
                            expand="one"),
        "hue": Param("range", (0.0, 0.0), "hue shift range in turns; one number h means [-h, h]", -0.5, 0.5,
                     expand="sym"),
    }),
    "grayscale": OpSchema("convert to gray, keeping the channel count (RandomGrayscale)", 0.1, {}),
    "gaussian_blur": OpSchema("Gaussian blur with a per-image random sigma (GaussianBlur)", 1.0, {
        "kernel_size": Param("int", 3, "odd kernel size in pixels", 1, 255),
        "sigma": Param("range", (0.1, 2.0), "sigma range in pixels; one number means a fixed sigma", 1e-3, 100.0),
    }),
    "solarize": OpSchema("invert pixels at or above a threshold (RandomSolarize)", 0.5, {
        "threshold": Param("float", 0.5, "threshold as a fraction of full intensity, in [0, 1] (128/255 = 0.502)",
                           0.0, 1.0),
    }),
    "posterize": OpSchema("keep only the top bits of each 8-bit value (RandomPosterize)", 0.5, {
        "bits": Param("int", 4, "bits kept, 1..8", 1, 8),
    }),
    "sharpness": OpSchema("sharpen or soften (RandomAdjustSharpness)", 0.5, {
        "factor": Param("float", 2.0, "sharpness factor; 1 = unchanged, 0 = smoothed", 0.0, 100.0),
    }),
    "autocontrast": OpSchema("stretch each channel to the full range (RandomAutocontrast)", 0.5, {}),
    "equalize": OpSchema("histogram-equalize each channel (RandomEqualize)", 0.5, {}),
    "invert": OpSchema("invert intensities (RandomInvert)", 0.5, {}),
    "erase": OpSchema("erase a random rectangle strictly smaller than the image (RandomErasing)", 0.5, {
        "scale": Param("range", (0.02, 0.33), "erased area range as a fraction of the image", 1e-4, 1.0),
        "ratio": Param("range", (0.3, 3.3), "aspect ratio range (height / width, as RandomErasing)", 1e-3, 1e3),
        "value": Param("value", "mean", "fill: mean (0 after normalization), random (noise) or a value in [0, 1]",
                       0.0, 1.0, choices=("mean", "random")),
    }),
    "cutout": OpSchema("erase a square centred anywhere, clipped at the border (Cutout)", 1.0, {
        "fraction": Param("float", 0.5, "side of the square as a fraction of the image side", 0.0, 1.0),
        "value": Param("value", "mean", "fill: mean (0 after normalization) or a value in [0, 1]",
                       0.0, 1.0, choices=("mean",)),
    }),
    "randaugment": OpSchema("RandAugment: num_ops random ops at a fixed magnitude, drawn per image", 1.0, {
        "num_ops": Param("int", 2, "ops applied in sequence", 0, 16),
        "magnitude": Param("int", 9, "magnitude bin, below num_magnitude_bins", 0, 1000),
        "num_magnitude_bins": Param("int", 31, "number of magnitude bins", 2, 1001),
        "interpolation": _interp(), "fill": _fill(None),
    }),
    "autoaugment": OpSchema("AutoAugment with a learned policy (cifar10, imagenet, svhn), drawn per image", 1.0, {
        "policy": Param("choice", "imagenet", "policy: cifar10, imagenet or svhn", choices=POLICIES),
        "interpolation": _interp(), "fill": _fill(None),
    }),
    "trivialaugment": OpSchema("TrivialAugment Wide: one random op at a random magnitude per image", 1.0, {
        "num_magnitude_bins": Param("int", 31, "number of magnitude bins", 2, 1001),
        "interpolation": _interp(), "fill": _fill(None),
    }),
    "choice": OpSchema("apply exactly one of `ops`, picked per image (RandomChoice)", 1.0, {
        "ops": _nested(),
        "weights": Param("weights", None, "relative pick weights, one per sub-op; null = uniform"),
    }),
    "sequence": OpSchema("apply all of `ops` in order, under one shared coin `p` (RandomApply of a list)", 1.0, {
        "ops": _nested(),
    }),
}

NOT_OPS = {
    "mixup": "mixup is set by augment.mixup_alpha (and augment.mix_prob), not as an op",
    "cutmix": "cutmix is set by augment.cutmix_alpha (and augment.mix_prob), not as an op",
    "normalize": "normalization is set by augment.normalize (and augment.mean / augment.std), not as an op",
}


def op_names() -> list[str]:
    """Names of every augmentation op a preset may use."""
    return sorted(SCHEMAS)


def check_ops(ops: list[dict], source: str | None = None) -> None:
    """Validate an `augment.ops` list; raise ConfigError naming the file, the dotted key and what to do."""
    normalize_ops(ops, source)


def normalize_ops(ops: Any, source: str | None = None, where: str = "augment.ops") -> list[dict[str, Any]]:
    """Validate `ops` and return it with defaults filled in and shorthands expanded."""
    if ops is None:
        return []
    if not isinstance(ops, (list, tuple)):
        _fail(source, where, f"expected a list of ops like [{{op: hflip, p: 0.5}}], got {ops!r}")
    return [_normalize_op(raw, source, f"{where}[{i}]") for i, raw in enumerate(ops)]


def _fail(source: str | None, where: str, message: str) -> None:
    prefix = f"{source}: {where}" if source else where
    raise ConfigError(f"{prefix}: {message}")


def _normalize_op(raw: Any, source: str | None, where: str) -> dict[str, Any]:
    available = ", ".join(op_names())
    if not isinstance(raw, dict):
        _fail(source, where, f"expected a mapping like {{op: hflip, p: 0.5}}, got {raw!r}")
    if "op" not in raw:
        _fail(source, where, f"missing `op` (the augmentation name); available: {available}")
    name = raw["op"]
    if not isinstance(name, str) or name not in SCHEMAS:
        if isinstance(name, str) and name in NOT_OPS:
            _fail(source, f"{where}.op", NOT_OPS[name])
        _fail(source, f"{where}.op",
              f"unknown augmentation {name!r}{did_you_mean(str(name), SCHEMAS)}; available: {available}")
    schema = SCHEMAS[name]
    params = {"p": Param("prob", schema.default_p, "probability that an image gets this op", 0.0, 1.0),
              **schema.params}
    out: dict[str, Any] = {"op": name}
    for key, value in raw.items():
        if key == "op":
            continue
        if key not in params:
            _fail(source, f"{where}.{key}", f"unknown parameter{did_you_mean(str(key), params)}; "
                  f"`{name}` takes: {', '.join(params)}")
        out[key] = _normalize_value(params[key], value, source, f"{where}.{key}")
    for key, param in params.items():
        if key not in out:
            if param.kind == "ops":
                _fail(source, f"{where}.ops", f"`{name}` needs a non-empty list `ops` of sub-ops")
            out[key] = param.default
    _check_cross(name, out, source, where)
    return out


def _check_cross(name: str, op: dict[str, Any], source: str | None, where: str) -> None:
    """Rules that involve two parameters of one op."""
    if name == "randaugment" and op["magnitude"] >= op["num_magnitude_bins"]:
        _fail(source, f"{where}.magnitude",
              f"{op['magnitude']} must be below num_magnitude_bins ({op['num_magnitude_bins']})")
    if name == "gaussian_blur" and op["kernel_size"] % 2 == 0:
        _fail(source, f"{where}.kernel_size", f"{op['kernel_size']} must be odd (3, 5, 7, ...)")
    if name == "choice" and op["weights"] is not None and len(op["weights"]) != len(op["ops"]):
        _fail(source, f"{where}.weights", f"has {len(op['weights'])} values but there are {len(op['ops'])} ops")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(param: Param, value: Any, source: str | None, where: str, what: str = "a number") -> float:
    if not _is_number(value):
        _fail(source, where, f"{value!r} is not valid; expected {what}")
    if (param.lo is not None and value < param.lo) or (param.hi is not None and value > param.hi):
        _fail(source, where, f"{value!r} is out of range; expected a value in [{param.lo:g}, {param.hi:g}]")
    return float(value)


def _numbers(param: Param, value: Any, count: tuple[int, ...], source: str | None, where: str) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) not in count:
        sizes = " or ".join(str(c) for c in count)
        _fail(source, where, f"{value!r} is not valid; expected a number or a list of {sizes} numbers")
    return tuple(_number(param, v, source, where) for v in value)


def _normalize_value(param: Param, value: Any, source: str | None, where: str) -> Any:
    """Check one parameter value and return its expanded form."""
    kind = param.kind
    if value is None and param.nullable:
        return None
    if kind in ("prob", "float"):
        return _number(param, value, source, where, "a number or null" if param.nullable else "a number")
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            _fail(source, where, f"{value!r} is not valid; expected an integer")
        return int(_number(param, value, source, where))
    if kind == "choice":
        if value not in param.choices:
            _fail(source, where, f"{value!r} is not allowed{did_you_mean(str(value), param.choices)}; "
                  f"expected one of {', '.join(param.choices)}")
        return value
    if kind == "range":
        return _range(param, value, source, where)
    if kind == "xy":
        if _is_number(value):
            v = _number(param, value, source, where)
            return (v, v)
        return _numbers(param, value, (2,), source, where)
    if kind == "shear":
        if _is_number(value):
            v = abs(_number(param, value, source, where))
            return (-v, v, 0.0, 0.0)
        vals = _numbers(param, value, (2, 4), source, where)
        return vals + (0.0, 0.0) if len(vals) == 2 else vals
    if kind == "value":
        if isinstance(value, str):
            if value not in param.choices:
                _fail(source, where, f"{value!r} is not allowed; expected {' or '.join(param.choices)} "
                      f"or a number in [0, 1]")
            return value
        return _number(param, value, source, where)
    if kind == "ops":
        if not isinstance(value, (list, tuple)) or not value:
            _fail(source, where, "expected a non-empty list of sub-ops like [{op: hflip}, {op: vflip}]")
        return normalize_ops(value, source, where)
    if kind == "weights":
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not all(_is_number(v) and v >= 0 for v in value) \
                or sum(value) <= 0:
            _fail(source, where, f"{value!r} is not valid; expected a list of non-negative numbers, not all 0")
        return [float(v) for v in value]
    raise AssertionError(f"unknown parameter kind {kind}")


def _range(param: Param, value: Any, source: str | None, where: str) -> tuple[float, float]:
    """A [lo, hi] range, or one number expanded as the parameter says."""
    if _is_number(value):
        v = float(value)
        if param.expand == "sym":
            lo, hi = -abs(v), abs(v)
        elif param.expand == "one":
            if v < 0:
                _fail(source, where, f"{value!r} must not be negative")
            lo, hi = max(0.0, 1.0 - v), 1.0 + v
        else:
            lo, hi = v, v
        if (param.lo is not None and lo < param.lo) or (param.hi is not None and hi > param.hi):
            _fail(source, where, f"{value!r} is out of range; the range it stands for, [{lo:g}, {hi:g}], "
                  f"must lie in [{param.lo:g}, {param.hi:g}]")
        return (lo, hi)
    lo, hi = _numbers(param, value, (2,), source, where)
    if lo > hi:
        _fail(source, where, f"{list(value)!r}: the low end must not exceed the high end")
    return (lo, hi)
