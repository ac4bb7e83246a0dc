"""The Evaluate screen's evaluation: resolve the picked references, evaluate them with the engine functions the CLI
uses, draw the most confidently wrong images. `evaluate` runs in the console's compute process
(console/compute.py), so the UI process never imports torch and its screen keeps answering while torch loads;
progress comes back as it goes, and the screen's cancel flag reaches the engine between batches.

No Textual here (the compute process imports this module), and no torch at module level (the UI unpickles
`EvalOutcome` from it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.progress import Progress, ProgressCallback

PICTURE_WIDTH = 16  # columns of one wrong-image picture (half-block pixels: 2 image rows per line)
PICTURES_SHOWN = 12


def short(name: str, width: int) -> str:
    """`name` cut to `width` characters with an ellipsis."""
    return name if len(name) <= width else name[: width - 1] + "…"


def mistake_pictures(images: Any, mistakes: list[dict[str, Any]]) -> list[tuple[Any, str]]:
    """(picture, caption) for each wrong image: uint8 (K, C, H, W) numpy images drawn with rich-pixels."""
    from PIL import Image
    from rich_pixels import Pixels

    pictures = []
    for image, mistake in zip(images, mistakes):
        array = image[0] if image.shape[0] == 1 else image[:3].transpose(1, 2, 0)
        picture = Image.fromarray(array, mode="L" if image.shape[0] == 1 else "RGB").convert("RGB")
        height = max(2, round(PICTURE_WIDTH * picture.height / picture.width / 2) * 2)
        resample = Image.Resampling.NEAREST if picture.width < PICTURE_WIDTH else Image.Resampling.LANCZOS
        picture = picture.resize((PICTURE_WIDTH, min(height, 2 * PICTURE_WIDTH)), resample)
        caption = (f"{short(mistake['true'], 6)}→{short(mistake['predicted'], 6)} "
                   f"{100 * mistake['confidence']:.0f}%")
        pictures.append((Pixels.from_image(picture), caption))
    return pictures


@dataclass(frozen=True)
class EvalRequest:
    """What to evaluate, as picked on the screen."""

    runs_root: Path
    refs: list[str]
    split: str
    tta: str | None      # None: each run's eval.tta
    combine: str | None  # None: the first run's eval.combine
    greedy: bool


@dataclass
class EvalOutcome:
    """An evaluation record (engine's), with the notes, warnings and wrong-image pictures to show."""

    result: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pictures: list[tuple[Any, str]] = field(default_factory=list)


def run_evaluation(request: EvalRequest, progress: Progress) -> EvalOutcome:
    """Resolve the references and evaluate them (one checkpoint, or an ensemble) with the engine functions the
    CLI uses (so the same evals/ records and prediction cache); then draw the most confidently wrong images.
    Torch is imported here: this runs in the compute process (`evaluate`), or in any caller's thread."""
    from engine.ensemble import evaluate_checkpoint, evaluate_ensemble
    from engine.errors import RunError
    from engine.members import EvalOptions, resolve_refs

    refs, notes = resolve_refs(request.runs_root, request.refs)
    if not refs:
        raise RunError("nothing to evaluate: pick a run or a checkpoint")
    options = EvalOptions(split=request.split, tta=request.tta)
    if len(refs) == 1 and not request.greedy:
        result = evaluate_checkpoint(refs[0], options, request.combine, progress=progress)
    else:
        result = evaluate_ensemble(refs, options, request.combine, out_dir=request.runs_root / "ensembles",
                                   greedy_split="val" if request.greedy else None, progress=progress)
    # The record is saved: from here a cancel no longer applies (it would say nothing was saved, and lose the
    # result), so the pictures are drawn under a progress that reports but is never cancelled.
    drawing = Progress(progress.callback, warnings=progress.warnings, log_warnings=progress.log_warnings)
    drawing.report("drawing the wrong images", 0, 1)
    mistakes = (result.get("confident_mistakes") or [])[:PICTURES_SHOWN]
    from engine.inference import split_images

    images, _ = split_images(refs[0], options, [m["position"] for m in mistakes])
    pictures = mistake_pictures(images.numpy(), mistakes)
    drawing.report("done", 1, 1)
    return EvalOutcome(result, notes, list(progress.warnings), pictures)


def evaluate(request: EvalRequest, *, progress: ProgressCallback | None = None,
             cancel: threading.Event | None = None) -> EvalOutcome:
    """`run_evaluation` as the compute process runs it: `progress` and `cancel` come from the UI's call
    (`ComputeProcess.call(..., progress=..., cancel=...)`); warnings come back in the outcome, not logged."""
    return run_evaluation(request, Progress(progress, cancel or threading.Event(), log_warnings=False))
