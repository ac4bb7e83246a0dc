"""Test-time augmentation specs: "none", "flip", "flip+shift", "random:8", "flip+random:8", ...; no torch needed.

A spec is parts joined by "+". Deterministic parts add named views (always after "identity"):
`none` (identity only), `flip`/`hflip`, `vflip`, `shift` (4 diagonal shifts of 2 px, reflect padded) or
`shift:N` (shifts of N px, not N views). `random:N` adds N passes through the training augmentations (without
mixup/cutmix).
"""

from __future__ import annotations

from engine.errors import ConfigError, did_you_mean

DEFAULT_SHIFT = 2
MAX_COUNT = 1000  # passes or pixels: more is a typo (random:100000 ran for minutes with nothing to show)
PARTS = ("none", "identity", "flip", "hflip", "vflip", "shift", "shift:N", "random:N")


def shift_views(pixels: int) -> list[str]:
    """The four diagonal shifts by `pixels`, as view names `shift:dx,dy`."""
    return [f"shift:{dx},{dy}" for dx in (pixels, -pixels) for dy in (pixels, -pixels)]


def _within(part: str, spec: str) -> str:
    """`'random:abc'`, or `'random:abc' in 'flip+random:abc'` when the spec has more parts."""
    return repr(part) if part == str(spec).strip().lower() else f"{part!r} in {spec!r}"


def _count(part: str, spec: str, what: str) -> int:
    _, _, text = part.partition(":")
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_COUNT:
        raise ConfigError(f"eval.tta: {_within(part, spec)} needs a whole number of {what} from 1 to {MAX_COUNT}, "
                          f"e.g. {part.split(':')[0]}:{'8' if what == 'passes' else '2'}")
    return int(text)


def tta_views(spec: str) -> list[str]:
    """Parse a TTA spec into the list of views to average: named deterministic views and "random" entries."""
    views: list[str] = []
    randoms = 0
    deterministic = False
    for raw in str(spec).split("+"):
        part = raw.strip().lower()
        if part in ("none", "identity"):
            deterministic = True
        elif part in ("flip", "hflip", "vflip"):
            deterministic = True
            views.append("vflip" if part == "vflip" else "hflip")
        elif part == "shift" or part.startswith("shift:"):
            deterministic = True
            views.extend(shift_views(DEFAULT_SHIFT if part == "shift" else _count(part, spec, "pixels")))
        elif part.startswith("random:"):
            randoms += _count(part, spec, "passes")
        else:
            raise ConfigError(f"eval.tta: unknown part {_within(part, spec)}{did_you_mean(part, PARTS)}; "
                              f"use {', '.join(PARTS)} joined by '+', e.g. flip+shift or random:8")
    unique = list(dict.fromkeys(views))
    return (["identity"] + unique if deterministic else []) + ["random"] * randoms


SHIFTING_OPS = {"crop", "translate", "affine", "resized_crop", "randaugment", "autoaugment", "trivialaugment"}


def _op_names(ops: list[dict]) -> set[str]:
    """Every op named in an `augment.ops` list, nested `choice`/`sequence` ops included."""
    names: set[str] = set()
    for op in ops:
        if isinstance(op, dict):
            names.add(str(op.get("op")))
            names |= _op_names(op.get("ops") or [])
    return names


def unseen_views(views: list[str], ops: list[dict]) -> list[str]:
    """The deterministic TTA views whose transform training never applied (a flip the model never saw can cost
    accuracy: digits are not mirror images of each other)."""
    trained = _op_names(ops)
    unseen = []
    if "hflip" in views and "hflip" not in trained:
        unseen.append("hflip")
    if "vflip" in views and "vflip" not in trained:
        unseen.append("vflip")
    if any(v.startswith("shift:") for v in views) and not trained & SHIFTING_OPS:
        unseen.append("shift")
    return unseen
