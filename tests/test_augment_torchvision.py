"""Where the augmentation docs promise torchvision's behaviour, torchvision.transforms.v2 is the oracle.

Each test fixes the parameters (magnitude bin, angle, box, fill) so that both sides compute the same thing, then
compares on small real tensors. Two oracles: torchvision on float images in [0, 1] (the same arithmetic as ours,
so equal up to float32 rounding of the sampling grid), and torchvision on the uint8 images the trainer feeds
(torchvision rounds its result to uint8, so ours, scaled by 255, may sit on the other side of a .5 and round
one level away; never more).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Iterator

import pytest
import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from torchvision.transforms.v2 import AutoAugment, InterpolationMode, RandAugment, RandomAffine, RandomErasing, \
    RandomResizedCrop, RandomRotation, TrivialAugmentWide

from engine.augment import Augmenter, check_ops
from engine.augment import kernels as K
from engine.augment import policies as P
from engine.augment.schema import normalize_ops
from engine.config import AugmentConfig
from engine.errors import ConfigError

TV_VERSION = tuple(int(v) for v in torchvision.__version__.split("+")[0].split(".")[:2])
pytestmark = pytest.mark.skipif(TV_VERSION < (0, 29), reason="the oracle is torchvision >= 0.29's kernels")

MODES = {"nearest": InterpolationMode.NEAREST, "bilinear": InterpolationMode.BILINEAR}
# Float32 sampling grids built two ways (affine_grid vs torchvision's own) differ by ~1e-6 px.
FLOAT_TOL = 2e-5


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These tensors are tiny: a second thread only adds hand-off cost (50x on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def real_images(n: int = 4, h: int = 24, w: int = 24, seed: int = 0) -> torch.Tensor:
    """uint8 images with structure (a smooth ramp plus noise), so borders and interpolation show."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(30, 220, w).view(1, 1, 1, w) + torch.linspace(-20, 20, h).view(1, 1, h, 1)
    noise = torch.randint(-25, 26, (n, 3, h, w), generator=g)
    return (ramp + noise).clamp(0, 255).round().to(torch.uint8)


def all_levels() -> torch.Tensor:
    """Every uint8 level once per channel (channels rolled), shaped (1, 3, 16, 16)."""
    levels = torch.arange(256).view(16, 16)
    return torch.stack([levels, levels.roll(85), levels.roll(170)])[None].to(torch.uint8)


def augmenter(ops: list[dict]) -> Augmenter:
    """An Augmenter whose normalization is the identity (mean 0, std 1), so outputs are pixels in [0, 1]."""
    return Augmenter(AugmentConfig(ops=ops), mean=[0.0] * 3, std=[1.0] * 3, num_classes=10, device=torch.device("cpu"))


def run_op(op: dict, x8: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One op at p = 1 on uint8 images; float output in [0, 1]."""
    aug = augmenter([{**op, "p": 1.0}])
    return aug.train_batch(x8, torch.zeros(x8.shape[0], dtype=torch.long), torch.Generator().manual_seed(seed))[0]


def assert_uint8_close(ours: torch.Tensor, reference: torch.Tensor, share: float = 0.02) -> None:
    """Ours (float in [0, 1]) against torchvision's uint8 output: at most one level apart, on few pixels."""
    diff = ((ours * 255).round() - reference.float()).abs()
    assert diff.max() <= 1, f"{int(diff.max())} levels apart"
    assert (diff > 0).float().mean() <= share, f"{float((diff > 0).float().mean()):.1%} of pixels off by one"


# ---------------------------------------------------------------- RandAugment / TrivialAugment / AutoAugment tables

POLICY_KINDS = {  # our (wide, bins) next to torchvision's class
    "randaugment": (False, 31, RandAugment),
    "autoaugment": (False, 10, AutoAugment),
    "trivialaugment": (True, 31, TrivialAugmentWide),
}


def tv_magnitude(kind: str, name: str, level: int, negate: bool, h: int, w: int) -> float:
    """The magnitude torchvision's policy passes to its op for this bin and sign."""
    _, bins, cls = POLICY_KINDS[kind]
    magnitudes_fn, signed = cls._AUGMENTATION_SPACE[name]
    magnitudes = magnitudes_fn(bins, h, w)
    if magnitudes is None:
        return 0.0
    magnitude = float(magnitudes[level])
    return -magnitude if signed and negate else magnitude


@functools.lru_cache(maxsize=None)
def param_table(kind: str, h: int, w: int) -> torch.Tensor:
    """Our per-(op, bin, sign) parameter table for this policy and image size (built once per test session)."""
    wide, bins, _ = POLICY_KINDS[kind]
    return P.param_table(P.magnitude_table(wide, bins, h, w), h, w)


def ours_policy_op(kind: str, x: torch.Tensor, draws: list[tuple[str, int, bool]], interpolation: str,
                   fill: float | None) -> torch.Tensor:
    """Our policy kernel, as the trainer runs it, on float images: image i draws (name, level, negate) i."""
    _, bins, _ = POLICY_KINDS[kind]
    rows = torch.tensor([(P.OP_ID[name] * bins + level) * 2 + int(negate) for name, level, negate in draws])
    return P.apply_ops(x, param_table(kind, *x.shape[-2:])[rows], frozenset(P.OP_NAMES), interpolation, fill)


def tv_policy_op(kind: str, x: torch.Tensor, draw: tuple[str, int, bool], interpolation: str,
                 fill: float | None) -> torch.Tensor:
    """torchvision's own op for one draw (fill in the image's units: 0..255 for uint8)."""
    _, _, cls = POLICY_KINDS[kind]
    name, level, negate = draw
    magnitude = tv_magnitude(kind, name, level, negate, *x.shape[-2:])
    return cls()._apply_image_or_video_transform(x, name, magnitude, interpolation=MODES[interpolation],
                                                 fill={"others": fill})


@pytest.mark.parametrize("kind", sorted(POLICY_KINDS))
def test_magnitude_tables_are_torchvisions_float32_tables(kind: str) -> None:
    wide, bins, cls = POLICY_KINDS[kind]
    h, w = 24, 33
    ours = P.magnitude_table(wide, bins, h, w)
    for name, (magnitudes_fn, _) in cls._AUGMENTATION_SPACE.items():
        reference = magnitudes_fn(bins, h, w)
        if reference is not None:
            assert torch.equal(ours[P.OP_ID[name]], reference.double()), name


@pytest.mark.parametrize("kind", sorted(POLICY_KINDS))
def test_translate_bins_shift_what_torchvision_shifts(kind: str) -> None:
    """Every bin and sign: TrivialAugment's bin 15 is 15.999999 in float32, so 15 pixels, not 16."""
    _, bins, _ = POLICY_KINDS[kind]
    draws = [(name, level, negate) for name in ("TranslateX", "TranslateY") for level in range(bins)
             for negate in (False, True)]
    x8 = real_images(n=1, h=36, w=40).expand(len(draws), -1, -1, -1)
    ours = (ours_policy_op(kind, x8.float() / 255, draws, "nearest", None) * 255).round().to(torch.uint8)
    for i, draw in enumerate(draws):
        assert torch.equal(ours[i], tv_policy_op(kind, x8[i], draw, "nearest", None)), draw


@pytest.mark.parametrize("kind", sorted(POLICY_KINDS))
def test_solarize_bins_invert_what_torchvision_inverts(kind: str) -> None:
    """Every bin on every uint8 level: bins 16, 18 and 24 of 31 sit a hair above 119, 102 and 51."""
    _, bins, _ = POLICY_KINDS[kind]
    draws = [("Solarize", level, False) for level in range(bins)]
    x8 = all_levels().expand(bins, -1, -1, -1)
    ours = ours_policy_op(kind, x8.float() / 255, draws, "nearest", None)
    for i, draw in enumerate(draws):
        assert torch.equal((ours[i] * 255).round().to(torch.uint8), tv_policy_op(kind, x8[i], draw, "nearest", None))
        assert torch.equal(ours[i], tv_policy_op(kind, x8[i].float() / 255, draw, "nearest", None)), draw


@pytest.mark.parametrize("fill", [None, 0.0, 1e-6, 0.4])
def test_policy_bilinear_warps_fill_like_torchvision(fill: float | None) -> None:
    """Partly uncovered warps (31.5 degrees, shears) blend towards fill by coverage; fill None only pads zeros."""
    draws = [("Rotate", 7, False), ("ShearX", 30, True), ("ShearY", 12, False), ("TranslateY", 9, True)]
    x8 = real_images(n=len(draws))
    ours = ours_policy_op("trivialaugment", x8.float() / 255, draws, "bilinear", fill)
    for i, draw in enumerate(draws):
        floats = tv_policy_op("trivialaugment", x8[i].float() / 255, draw, "bilinear", fill)
        assert (ours[i] - floats).abs().max() < FLOAT_TOL, draw
        uint8 = tv_policy_op("trivialaugment", x8[i], draw, "bilinear", None if fill is None else fill * 255)
        assert_uint8_close(ours[i], uint8)


def test_fill_defaults_are_torchvisions() -> None:
    """The policies default to fill=None (no coverage blend), RandomRotation/RandomAffine to fill=0."""
    for name, cls in (("randaugment", RandAugment), ("autoaugment", AutoAugment),
                      ("trivialaugment", TrivialAugmentWide), ("rotate", RandomRotation), ("affine", RandomAffine)):
        default = inspect.signature(cls).parameters["fill"].default
        assert normalize_ops([{"op": name}])[0]["fill"] == default, name
    check_ops([{"op": "randaugment", "fill": None}, {"op": "rotate", "fill": None}])
    with pytest.raises(ConfigError, match=r"ops\[0\]\.fill: 'black' is not valid; expected a number or null"):
        check_ops([{"op": "rotate", "fill": "black"}])


# ---------------------------------------------------------------- rotate / affine: the coverage mask


@pytest.mark.parametrize("fill", [0.0, 1e-6, 0.7, None])
def test_bilinear_warp_applies_torchvisions_coverage_mask(fill: float | None) -> None:
    """fill 0 is a fill like any other (torchvision blends by coverage); only None skips the blend."""
    x8 = real_images(n=3)
    x = x8.float() / 255
    full = lambda v: torch.full((3,), float(v))  # noqa: E731
    matrix = K.inverse_affine(full(25), full(3), full(-2), full(1.1), full(7), full(-4), full(0), full(0))
    ours = K.warp(x, matrix, "bilinear", fill)
    args = dict(angle=25.0, translate=[3, -2], scale=1.1, shear=[7.0, -4.0], interpolation=MODES["bilinear"])
    assert (ours - TF.affine(x, **args, fill=fill)).abs().max() < FLOAT_TOL
    assert_uint8_close(ours, TF.affine(x8, **args, fill=None if fill is None else fill * 255))


def test_fill_zero_and_a_hair_above_zero_give_the_same_borders() -> None:
    """No jump at fill 0: the border is continuous in the fill value."""
    x = real_images(n=2).float() / 255
    zero = run_op({"op": "rotate", "degrees": [20, 20], "interpolation": "bilinear", "fill": 0.0}, x)
    hair = run_op({"op": "rotate", "degrees": [20, 20], "interpolation": "bilinear", "fill": 1e-6}, x)
    assert (zero - hair).abs().max() < 1e-5


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_rotate_and_affine_ops_match_torchvision(interpolation: str) -> None:
    """The ops end to end with their ranges pinned to one value (defaults: fill 0, as RandomRotation/RandomAffine)."""
    x8 = real_images(n=3)
    mode = MODES[interpolation]
    ours = run_op({"op": "rotate", "degrees": [20, 20], "interpolation": interpolation}, x8)
    reference = TF.rotate(x8.float() / 255, 20.0, interpolation=mode, fill=0.0)
    close = (ours - reference).abs() < FLOAT_TOL
    assert close.float().mean() >= (0.99 if interpolation == "nearest" else 1.0)  # nearest: grid ties may flip
    ours = run_op({"op": "affine", "degrees": [-12, -12], "scale": [0.9, 0.9], "shear": [5, 5, -3, -3],
                   "interpolation": interpolation, "fill": 0.25}, x8)
    reference = TF.affine(x8.float() / 255, angle=-12.0, translate=[0, 0], scale=0.9, shear=[5.0, -3.0],
                          interpolation=mode, fill=0.25)
    close = (ours - reference).abs() < FLOAT_TOL
    assert close.float().mean() >= (0.99 if interpolation == "nearest" else 1.0)


# ---------------------------------------------------------------- resized crop


BOXES = [(0, 0, 24, 24), (0, 0, 7, 9), (13, 11, 11, 13), (5, 3, 10, 17), (2, 19, 20, 5), (0, 8, 24, 11)]


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_crop_resize_samples_only_the_crop_like_torchvision(interpolation: str) -> None:
    """Each box (top, left, height, width) resized back to 24x24; pixels outside the box never leak in."""
    x8 = real_images(n=len(BOXES))
    x = x8.float() / 255
    top, left, height, width = (torch.tensor(v, dtype=torch.float32) for v in zip(*BOXES))
    ours = K.crop_resize(x, top, left, height, width, interpolation)
    for i, box in enumerate(BOXES):
        floats = TF.resized_crop(x[i:i + 1], *box, size=[24, 24], interpolation=MODES[interpolation])
        if interpolation == "nearest":
            assert torch.equal(ours[i:i + 1], floats), box
        else:
            assert (ours[i:i + 1] - floats).abs().max() < FLOAT_TOL, box
            # torchvision resizes uint8 on the CPU with a fixed-point kernel: even its own float result, rounded,
            # is one level off its uint8 result on ~17% of pixels. One level, then, but on any share.
            assert_uint8_close(ours[i:i + 1], TF.resized_crop(x8[i:i + 1], *box, size=[24, 24],
                                                              interpolation=MODES[interpolation]), share=1.0)


def test_resized_crop_falls_back_to_torchvisions_central_crop() -> None:
    """No try fits a 24x24 box in a 20x30 image: torchvision takes the central 20x20 crop (not the whole image)."""
    x8 = real_images(n=2, h=20, w=30)
    params = RandomResizedCrop(size=(20, 30), scale=(1.0, 1.0), ratio=(1.0, 1.0)).make_params([x8])
    assert params == {"top": 0, "left": 5, "height": 20, "width": 20}
    ours = run_op({"op": "resized_crop", "scale": [1.0, 1.0], "ratio": [1.0, 1.0]}, x8)
    reference = TF.resized_crop(x8.float() / 255, **params, size=[20, 30], interpolation=MODES["bilinear"])
    assert (ours - reference).abs().max() < FLOAT_TOL


def test_resized_crop_box_size_is_torchvisions() -> None:
    """RandomResizedCrop's ratio is width / height: a fixed area and ratio give one box size."""
    params = RandomResizedCrop(size=(20, 30), scale=(0.3, 0.3), ratio=(2.0, 2.0)).make_params(
        [torch.zeros(1, 3, 20, 30)])
    _, _, h, w, found = K.sample_boxes(torch.Generator().manual_seed(0), 64, 20, 30, (0.3, 0.3), (2.0, 2.0),
                                       torch.device("cpu"))
    assert found.all() and (h == params["height"]).all() and (w == params["width"]).all()


# ---------------------------------------------------------------- erase


def erased_boxes(x8: torch.Tensor, scale: float, ratio: float) -> list[tuple[int, int]]:
    """(height, width) of the box the erase op zeroed in each image ((0, 0) where it erased nothing)."""
    out = run_op({"op": "erase", "scale": [scale, scale], "ratio": [ratio, ratio], "value": 0.0}, x8)
    zero = (out == 0).all(1)  # the test images have no black pixel
    return [(int(z.any(1).sum()), int(z.any(0).sum())) for z in zero]


def test_erase_box_is_strictly_smaller_than_the_image() -> None:
    """RandomErasing rejects a box as large as the image (and then leaves the image alone)."""
    x8 = real_images(n=8, h=20, w=20).clamp(min=1)
    eraser = RandomErasing(p=1.0, scale=(1.0, 1.0), ratio=(1.0, 1.0), value=0)
    assert torch.equal(eraser(x8[0]), x8[0])
    assert erased_boxes(x8, 1.0, 1.0) == [(0, 0)] * 8
    # one pixel short of the image on each side is allowed: 19 x 19 from scale 361/400
    assert erased_boxes(x8, 361 / 400, 1.0) == [(19, 19)] * 8


def test_erase_box_shape_is_torchvisions() -> None:
    """RandomErasing's ratio is height / width (RandomResizedCrop's is width / height)."""
    x8 = real_images(n=8, h=20, w=30).clamp(min=1)
    params = RandomErasing(p=1.0, scale=(0.2, 0.2), ratio=(3.0, 3.0), value=0).make_params([x8[0]])
    assert (params["h"], params["w"]) == (19, 6)
    assert erased_boxes(x8, 0.2, 3.0) == [(19, 6)] * 8


# ---------------------------------------------------------------- macro F1


def test_macro_f1_averages_over_every_class() -> None:
    """macro_f1 counts a class with no images and no predictions as 0, unlike sklearn's default average."""
    from sklearn.metrics import f1_score

    from engine.metrics import classification_metrics, combine

    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    predictions = torch.tensor([0, 1, 1, 1, 2, 2])
    logits = torch.nn.functional.one_hot(predictions, 4).float()[None]  # class 3: never seen, never predicted
    result = classification_metrics(combine(logits, "logits"), labels, ["a", "b", "c", "d"])
    everything = f1_score(labels, predictions, labels=[0, 1, 2, 3], average="macro", zero_division=0)
    present = f1_score(labels, predictions, average="macro")
    assert math.isclose(result["macro_f1"], everything) and not math.isclose(result["macro_f1"], present)
    assert "every class" in classification_metrics.__doc__
