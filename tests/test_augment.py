"""Augmentation: per-op behaviour, validation messages, TTA views, normalization, mixup/cutmix, presets."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms.v2.functional as TF
import yaml

from engine.augment import Augmenter, apply_view, check_ops, op_names, resolve_normalization, tta_views
from engine.augment import kernels as K
from engine.augment import policies as P
from engine.config import AugmentConfig, section_from_dict
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TV_VERSION = tuple(int(v) for v in torchvision.__version__.split("+")[0].split(".")[:2])
# The reference comparisons use torchvision 0.29's kernels and string arguments (older releases differ).
needs_tv029 = pytest.mark.skipif(TV_VERSION < (0, 29), reason="reference semantics of torchvision >= 0.29")
CPU = torch.device("cpu")
DEVICES = [CPU] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

# One representative configuration per op (p is set by each test).
OP_CASES: dict[str, dict] = {
    "hflip": {},
    "vflip": {},
    "crop": {"padding": 3, "padding_mode": "reflect"},
    "translate": {"fraction": 0.25},
    "rotate": {"degrees": 30},
    "affine": {"degrees": 10, "translate": 0.125, "scale": [0.8, 1.2], "shear": 10, "fill": 0.5},
    "resized_crop": {"scale": [0.2, 0.8]},
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.2},
    "grayscale": {},
    "gaussian_blur": {"kernel_size": 5, "sigma": [0.5, 2.0]},
    "solarize": {"threshold": 0.5},
    "posterize": {"bits": 2},
    "sharpness": {"factor": 3.0},
    "autocontrast": {},
    "equalize": {},
    "invert": {},
    "erase": {"scale": [0.1, 0.3], "value": "random"},
    "cutout": {"fraction": 0.4, "value": 0.0},
    "randaugment": {"num_ops": 2, "magnitude": 15},
    "autoaugment": {"policy": "cifar10"},
    "trivialaugment": {},
    "choice": {"ops": [{"op": "rotate", "degrees": 20}, {"op": "gaussian_blur", "sigma": 1.5},
                       {"op": "crop", "padding": 2, "padding_mode": "reflect"}]},
    "sequence": {"ops": [{"op": "invert", "p": 1.0}, {"op": "translate", "fraction": 0.2}]},
}


def images(n: int = 16, size: int = 24, channels: int = 3, seed: int = 0, same: bool = False) -> torch.Tensor:
    """uint8 test images in [40, 200) (so autocontrast changes them), big enough for equalize (> 510 px)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(40, 200, (1 if same else n, channels, size, size), generator=g, dtype=torch.uint8)
    return x.expand(n, -1, -1, -1).contiguous() if same else x


def augmenter(ops: list[dict], device: torch.device = CPU, channels: int = 3, **cfg: object) -> Augmenter:
    config = AugmentConfig(ops=ops, **cfg)
    return Augmenter(config, mean=[0.5] * channels, std=[0.25] * channels, num_classes=10, device=device)


def gen(seed: int = 0, device: torch.device = CPU) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def labels(n: int = 16) -> torch.Tensor:
    return torch.arange(n) % 10


def test_op_names_cover_the_issue_list() -> None:
    wanted = {"hflip", "vflip", "crop", "translate", "rotate", "affine", "resized_crop", "color_jitter", "grayscale",
              "gaussian_blur", "solarize", "erase", "cutout", "randaugment", "autoaugment", "trivialaugment", "choice"}
    assert wanted <= set(op_names())
    assert set(OP_CASES) == set(op_names())


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_op_shape_dtype_probability_seed_and_independence(name: str, device: torch.device) -> None:
    x = images().to(device)
    y = labels().to(device)
    off = augmenter([{"op": name, "p": 0.0, **OP_CASES[name]}], device)
    on = augmenter([{"op": name, "p": 1.0, **OP_CASES[name]}], device)
    out0, y0 = off.train_batch(x, y, gen(0, device))
    assert out0.dtype == torch.float32 and out0.shape == x.shape
    assert torch.equal(out0, off.eval_batch(x)), "p = 0 must leave every image unchanged"
    assert y0.dtype == torch.int64 and torch.equal(y0, y)

    out1, _ = on.train_batch(x, y, gen(0, device))
    assert out1.dtype == torch.float32 and out1.shape == x.shape and torch.isfinite(out1).all()
    changed = (out1 - on.eval_batch(x)).abs().flatten(1).amax(1) > 1e-4
    assert changed.sum() >= x.shape[0] // 2, f"p = 1 changed only {int(changed.sum())} of {x.shape[0]} images"
    again, _ = on.train_batch(x, y, gen(0, device))
    assert torch.equal(out1, again), "same seed must give the same output"

    # Identical inputs, p = 0.5: images of one batch draw independently, so the outputs must differ.
    half = augmenter([{"op": name, "p": 0.5, **OP_CASES[name]}], device)
    same = images(same=True).to(device)
    out, _ = half.train_batch(same, y, gen(1, device))
    distinct = torch.unique(out.flatten(1).round(decimals=4), dim=0).shape[0]
    assert distinct >= 2
    assert not torch.equal(out, half.train_batch(same, y, gen(2, device))[0]), "another seed, another output"


def test_ops_work_on_gray_images() -> None:
    x = images(channels=1)
    for name, params in OP_CASES.items():
        out, _ = augmenter([{"op": name, "p": 1.0, **params}], channels=1).train_batch(x, labels(), gen())
        assert out.shape == x.shape and torch.isfinite(out).all(), name


def test_random_view_is_seeded_and_never_mixes() -> None:
    aug = augmenter([{"op": "hflip", "p": 0.5}, {"op": "translate", "fraction": 0.25}], mixup_alpha=1.0)
    x = images()
    a, b = aug.random_view(x, gen(3)), aug.random_view(x, gen(3))
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == torch.float32
    assert not torch.equal(a, aug.eval_batch(x))
    plain = augmenter([])
    assert torch.equal(plain.random_view(x, gen(3)), plain.eval_batch(x))


def test_eval_batch_is_deterministic_normalization() -> None:
    aug = augmenter([{"op": "randaugment"}], mixup_alpha=0.4)
    x = images()
    expected = (x.float() / 255 - 0.5) / 0.25
    assert torch.allclose(aug.eval_batch(x), expected, atol=1e-6)
    assert torch.equal(aug.eval_batch(x), aug.eval_batch(x))


def test_generator_on_another_device_is_explained() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    with pytest.raises(ValueError, match="generator"):
        augmenter([{"op": "hflip"}], torch.device("cuda")).train_batch(images().cuda(), labels().cuda(), gen())


# ---------------------------------------------------------------- individual kernels


def test_crop_matches_padded_crop() -> None:
    x = images(n=2, size=8)
    out = K.shift(x, torch.tensor([1, -2]), torch.tensor([2, 0]), "reflect")
    padded = F.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    assert torch.equal(out[0].float(), padded[0, :, 0:8, 1:9])  # moved right 1, down 2
    assert torch.equal(out[1].float(), padded[1, :, 2:10, 4:12])
    zero = K.shift(x, torch.tensor([3, 0]), torch.tensor([0, 0]), "zero")
    assert (zero[0, :, :, :3] == 0).all() and torch.equal(zero[0, :, :, 3:], x[0, :, :, :5])


def test_resized_crop_and_erase_boxes_respect_ranges() -> None:
    top, left, h, w, found = K.sample_boxes(gen(), 256, 20, 30, (0.1, 0.3), (0.5, 2.0), CPU)
    assert found.all()
    area = h * w / (20 * 30)
    assert (area > 0.08).all() and (area < 0.33).all()
    assert (top >= 0).all() and (top + h <= 20).all() and (left >= 0).all() and (left + w <= 30).all()


@needs_tv029
@pytest.mark.parametrize("name,magnitude", [("Rotate", 13.0), ("ShearY", -0.25), ("TranslateX", 5.7),
                                            ("Brightness", 0.3), ("Color", -0.4), ("Contrast", 0.5),
                                            ("Sharpness", 0.6), ("Posterize", 5.0), ("Solarize", 0.4),
                                            ("AutoContrast", 0.0), ("Equalize", 0.0), ("Invert", 0.0)])
def test_policy_ops_match_torchvision(name: str, magnitude: float) -> None:
    """Each image-level policy op agrees with torchvision's own op on uint8 (up to uint8 rounding)."""
    from torchvision.transforms.v2 import RandAugment

    x8 = images(n=3, size=15)
    magnitudes = torch.zeros(len(P.OP_NAMES), 1, dtype=torch.float64)
    magnitudes[P.OP_ID[name]] = magnitude
    row = P.param_table(magnitudes, 15, 15)[P.OP_ID[name] * 2]  # bin 0, not negated
    ours = P.apply_ops(x8.float() / 255, row.expand(3, -1), frozenset(P.OP_NAMES), "nearest", 0.0)
    if name == "Rotate":  # F.rotate(a) is F.affine(-a); affine's kernel is the one stable across versions
        reference = TF.affine(x8, angle=-magnitude, translate=[0, 0], scale=1.0, shear=[0.0, 0.0])
    else:
        reference = RandAugment()._apply_image_or_video_transform(x8, name, magnitude, interpolation="nearest",
                                                                  fill={torch.Tensor: None})
    off = (ours - reference.float() / 255).abs() > 1.5 / 255
    assert off.float().mean() < 0.03  # nearest-neighbour ties may round the other way on a few pixels


@needs_tv029
def test_affine_hue_blur_match_torchvision() -> None:
    x = images(n=2, size=15).float() / 255
    full = lambda v: torch.full((2,), float(v))  # noqa: E731
    matrix = K.inverse_affine(full(20), full(3), full(-2), full(1.1), full(7), full(-4), full(0), full(0))
    reference = TF.affine(x, angle=20, translate=[3, -2], scale=1.1, shear=[7, -4], interpolation="bilinear")
    assert torch.allclose(K.warp(x, matrix, "bilinear"), reference, atol=1e-5)
    assert torch.allclose(K.adjust_hue(x, full(0.2)), TF.adjust_hue(x, 0.2), atol=1e-5)
    assert torch.allclose(K.gaussian_blur(x, 3, full(0.6)), TF.gaussian_blur(x, [3, 3], [0.6, 0.6]), atol=1e-5)


def test_autoaugment_policies_parse() -> None:
    for policy in ("cifar10", "imagenet", "svhn"):
        ops, probs, bins = P.policy_table(policy)
        assert ops.shape == probs.shape == bins.shape == (25, 2)
        assert ((probs >= 0) & (probs <= 1)).all() and (bins >= 0).all() and (bins < 10).all()


# ---------------------------------------------------------------- mixup / cutmix


def test_mixup_soft_targets_and_lambda() -> None:
    n = 8
    x, y = images(n=n), torch.arange(n)
    aug = Augmenter(AugmentConfig(mixup_alpha=0.4), mean=[0.5] * 3, std=[0.25] * 3, num_classes=n, device=CPU)
    out, targets = aug.train_batch(x, y, gen(5))
    assert targets.shape == (n, n) and targets.dtype == torch.float32
    assert torch.allclose(targets.sum(1), torch.ones(n))
    clean = aug.eval_batch(x)
    for i in range(n):
        lam = float(targets[i, i])
        others = targets[i].clone()
        others[i] = -1.0
        partner = int(others.argmax()) if lam < 1 - 1e-6 else i
        assert torch.allclose(out[i], lam * clean[i] + (1 - lam) * clean[partner], atol=1e-5)


def test_cutmix_lambda_is_the_box_area() -> None:
    n = 8
    x, y = images(n=n, size=20), torch.arange(n)
    aug = Augmenter(AugmentConfig(cutmix_alpha=1.0), mean=[0.5] * 3, std=[0.25] * 3, num_classes=n, device=CPU)
    clean = aug.eval_batch(x)
    for seed in range(4):
        out, targets = aug.train_batch(x, y, gen(seed))
        assert torch.allclose(targets.sum(1), torch.ones(n))
        for i in range(n):
            own = (out[i] == clean[i]).all(0).float().mean()
            assert math.isclose(float(targets[i, i]), float(own), abs_tol=1e-6)


def test_mix_prob_zero_and_both_alphas() -> None:
    x, y = images(n=8), torch.arange(8)
    never = Augmenter(AugmentConfig(mixup_alpha=1.0, mix_prob=0.0), mean=[0.5], std=[0.25], num_classes=8,
                      device=CPU)
    out, targets = never.train_batch(x, y, gen())
    assert torch.equal(targets, y) and torch.equal(out, never.eval_batch(x))
    both = Augmenter(AugmentConfig(mixup_alpha=1.0, cutmix_alpha=1.0, mix_prob=0.5), mean=[0.5], std=[0.25],
                     num_classes=8, device=CPU)
    seen_mixed = seen_plain = False
    for seed in range(12):
        out, targets = both.train_batch(x, y, gen(seed))
        assert targets.shape == (8, 8) and torch.allclose(targets.sum(1), torch.ones(8))
        plain = torch.equal(targets, F.one_hot(y, 8).float())
        seen_plain |= plain
        seen_mixed |= not plain
        if plain:
            assert torch.equal(out, both.eval_batch(x))
    assert seen_mixed and seen_plain


def test_bad_mix_settings_raise() -> None:
    with pytest.raises(ConfigError, match="augment.mix_prob"):
        augmenter([], mix_prob=1.5)


# ---------------------------------------------------------------- validation messages


@pytest.mark.parametrize("ops,pattern", [
    ([{"op": "hflp"}], r"augment\.ops\[0\]\.op: unknown augmentation 'hflp' \(did you mean `hflip`\?\); "
                       r"available: .*randaugment"),
    ([{"op": "hflip"}, {"op": "vflip"}, {"op": "rotate", "degres": 10}],
     r"augment\.ops\[2\]\.degres: unknown parameter \(did you mean `degrees`\?\); `rotate` takes: p, degrees"),
    ([{"op": "hflip", "p": 1.5}], r"augment\.ops\[0\]\.p: 1\.5 is out of range; expected a value in \[0, 1\]"),
    ([{"op": "hflip", "p": "often"}], r"augment\.ops\[0\]\.p: 'often' is not valid; expected a number"),
    ([{"op": "crop", "padding": 1.5}], r"augment\.ops\[0\]\.padding: 1\.5 is not valid; expected an integer"),
    ([{"op": "crop", "padding_mode": "reflct"}], r"\.padding_mode: 'reflct' is not allowed \(did you mean `reflect`"),
    ([{"op": "solarize", "threshold": 128}], r"threshold: 128 is out of range.*\[0, 1\]"),
    ([{"op": "choice", "ops": [{"op": "rotate", "sigma": 1}]}], r"augment\.ops\[0\]\.ops\[0\]\.sigma: unknown"),
    ([{"op": "choice"}], r"augment\.ops\[0\]\.ops: `choice` needs a non-empty list"),
    ([{"op": "mixup"}], r"mixup is set by augment\.mixup_alpha"),
    ([{"p": 0.5}], r"augment\.ops\[0\]: missing `op`"),
    (["hflip"], r"augment\.ops\[0\]: expected a mapping"),
    ([{"op": "randaugment", "magnitude": 31}], r"magnitude: 31 must be below num_magnitude_bins \(31\)"),
    ([{"op": "gaussian_blur", "kernel_size": 4}], r"kernel_size: 4 must be odd"),
    ([{"op": "color_jitter", "hue": 0.7}], r"hue: 0\.7 is out of range"),
    ([{"op": "resized_crop", "scale": [0.9, 0.1]}], r"scale: \[0\.9, 0\.1\]: the low end must not exceed"),
])
def test_check_ops_messages(ops: list, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        check_ops(ops)


def test_check_ops_prefixes_the_source_and_accepts_valid_lists() -> None:
    with pytest.raises(ConfigError, match=r"^my\.yaml: augment\.ops\[0\]\.op"):
        check_ops([{"op": "nope"}], "my.yaml")
    check_ops([{"op": name, **params} for name, params in OP_CASES.items()])
    check_ops([])


def test_validation_does_not_import_torch() -> None:
    code = ("import sys, engine.augment as a; a.check_ops([{'op': 'hflip'}]); a.tta_views('flip+shift'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------- TTA


def test_tta_views_parsing() -> None:
    assert tta_views("none") == ["identity"]
    assert tta_views("flip") == ["identity", "hflip"]
    assert tta_views("flip+shift") == ["identity", "hflip", "shift:2,2", "shift:2,-2", "shift:-2,2", "shift:-2,-2"]
    assert tta_views("shift:1") == ["identity", "shift:1,1", "shift:1,-1", "shift:-1,1", "shift:-1,-1"]
    assert tta_views("random:3") == ["random"] * 3
    assert tta_views("flip+random:8") == ["identity", "hflip"] + ["random"] * 8
    assert tta_views("hflip+vflip") == ["identity", "hflip", "vflip"]
    for bad, pattern in [("flp", r"unknown part 'flp'.*did you mean `flip`"), ("random:0", "passes from 1 to 1000"),
                         ("random:x", "passes from 1 to 1000"), ("random:1001", "from 1 to 1000"),
                         ("flip+", "unknown part ''")]:
        with pytest.raises(ConfigError, match=pattern):
            tta_views(bad)


def test_apply_view() -> None:
    x = images(n=2, size=8)
    assert torch.equal(apply_view("identity", x), x)
    assert torch.equal(apply_view("hflip", x), x.flip(-1))
    assert torch.equal(apply_view("vflip", x), x.flip(-2))
    shifted = apply_view("shift:2,-2", x)
    assert shifted.dtype == torch.uint8
    assert torch.equal(shifted.float(), F.pad(x.float(), (2, 2, 2, 2), mode="reflect")[:, :, 4:12, 0:8])
    for view in [*tta_views("flip+shift")]:
        assert apply_view(view, x).shape == x.shape
    with pytest.raises(ConfigError, match="random_view"):
        apply_view("random", x)
    with pytest.raises(ConfigError, match="unknown view"):
        apply_view("rot90", x)


# ---------------------------------------------------------------- normalization and presets


def test_resolve_normalization() -> None:
    def cfg(**kw: object) -> AugmentConfig:
        return AugmentConfig(**kw)

    assert resolve_normalization(cfg(normalize="none"), [0.3], [0.2], 3) == ([0.0] * 3, [1.0] * 3)
    assert resolve_normalization(cfg(normalize="uniform"), [0.3], [0.2], 1) == ([0.5], [0.5])
    assert resolve_normalization(cfg(normalize="dataset"), [0.1, 0.2, 0.3], [0.2, 0.0, 0.3], 3) == (
        [0.1, 0.2, 0.3], [0.2, 1.0, 0.3])
    mean, std = resolve_normalization(cfg(normalize="imagenet"), [0.3], [0.2], 3)
    assert mean == [0.485, 0.456, 0.406] and std == [0.229, 0.224, 0.225]
    assert len(resolve_normalization(cfg(normalize="imagenet"), [0.3], [0.2], 1)[0]) == 1
    assert resolve_normalization(cfg(normalize="custom", mean=[0.4], std=[0.2]), [], [], 3) == ([0.4] * 3, [0.2] * 3)
    with pytest.raises(ConfigError, match=r"augment\.mean: has 2 values but the images have 3"):
        resolve_normalization(cfg(normalize="custom", mean=[0.4, 0.4], std=[0.2]), [], [], 3)
    with pytest.raises(ConfigError, match="custom needs"):
        resolve_normalization(cfg(normalize="custom"), [], [], 3)


PRESETS = sorted((ROOT / "presets" / "augment").glob("*.yaml"))
REQUIRED = {"none", "flip", "flip-translate", "flip-translate-erase", "randaugment", "mnist-choice",
            "autoaugment-cifar10", "fashion-224", "mixup", "cutmix", "small200-apply"}


def test_required_presets_exist() -> None:
    assert REQUIRED <= {p.stem for p in PRESETS}


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_validates_and_runs(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    raw.pop("description", None)
    config = section_from_dict("augment", raw, str(path))
    check_ops(config.ops, str(path))
    channels = 1 if "mnist" in path.stem else 3
    mean, std = resolve_normalization(config, [0.5] * channels, [0.25] * channels, channels)
    aug = Augmenter(config, mean=mean, std=std, num_classes=10, device=CPU)
    x = images(n=8, size=28 if channels == 1 else 24, channels=channels)
    out, targets = aug.train_batch(x, labels(8), gen())
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    if config.mixup_alpha or config.cutmix_alpha:
        assert targets.shape == (8, 10) and torch.allclose(targets.sum(1), torch.ones(8))
    else:
        assert torch.equal(targets, labels(8))


def test_small200_probabilities_are_in_the_write_up_range() -> None:
    raw = yaml.safe_load((ROOT / "presets" / "augment" / "small200-apply.yaml").read_text())
    probs = [op["p"] for op in raw["ops"] if op["op"] not in ("hflip",)]
    assert all(0.3 <= p <= 0.8 for p in probs)


@needs_tv029
def test_color_jitter_fixed_factors_match_torchvision() -> None:
    x = images(n=4, size=12)
    for key, reference in (("brightness", TF.adjust_brightness), ("contrast", TF.adjust_contrast),
                           ("saturation", TF.adjust_saturation), ("hue", TF.adjust_hue)):
        value = 0.2 if key == "hue" else 1.6
        aug = augmenter([{"op": "color_jitter", key: [value, value], "p": 1.0}], channels=3)
        out = aug.train_batch(x, labels(4), gen())[0] * 0.25 + 0.5
        assert torch.allclose(out, reference(x.float() / 255, value), atol=1e-5), key


def test_tta_views_training_never_applied_are_named() -> None:
    from engine.augment.tta import unseen_views

    views = tta_views("flip+shift")
    assert unseen_views(views, []) == ["hflip", "shift"]
    assert unseen_views(views, [{"op": "hflip"}, {"op": "choice", "ops": [{"op": "translate"}]}]) == []
    assert unseen_views(tta_views("vflip"), [{"op": "hflip"}]) == ["vflip"]
