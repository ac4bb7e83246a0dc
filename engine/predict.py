"""Predictions for an unlabeled image folder, by one checkpoint or an ensemble: the submission CSV."""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError, DataError
from engine.members import CheckpointRef, EvalOptions, check_same_classes, effective_tta, eval_config
from engine.metrics import combine

log = logging.getLogger(__name__)


def member_image_logits(ref: CheckpointRef, images_dir: Path, options: EvalOptions,
                        on_bad_image: str = "error") -> tuple[torch.Tensor, list[str]]:
    """One member's view logits (V, N, C) for the images of a folder, and the image ids (sorted)."""
    from engine.augment import tta_views
    from engine.data import load_unlabeled
    from engine.inference import build_runtime, is_out_of_memory, out_of_memory_error, run_views

    config = eval_config(ref, options)
    try:
        runtime = build_runtime(ref, config, options, with_data=False)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory_error(exc, f"loading {ref.label}", config.train.eval_batch_size,
                                      "train.eval_batch_size", options.device or config.train.device) from None
        raise
    images, ids = load_unlabeled(images_dir, image_size=runtime.image_size, channels=runtime.channels,
                                 on_bad_image=on_bad_image, max_pixels=config.data.max_image_pixels)
    rows = torch.arange(len(ids))
    logits, _ = run_views(runtime, images, torch.zeros(len(ids), dtype=torch.long), rows,
                          tta_views(effective_tta(ref, options)))
    return logits, list(ids)


def submission_text(ids: list[str], labels: list[str], header: tuple[str, str]) -> str:
    """CSV text: a header row, then one (image id, predicted class name) row per image."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(ids, labels))
    return buffer.getvalue()


def predict_folder(refs: list[CheckpointRef], images_dir: Path, out_csv: Path, options: EvalOptions,
                   combine_how: str | None = None, *, skip_bad_images: bool = False) -> dict[str, Any]:
    """Predict every image of `images_dir` with the ensemble of `refs` and write `out_csv` (id, label name).

    The header is the training CSV's column names (data.file_column, data.label_column: Id,Category by default).
    An unreadable image stops the prediction (a submission must have every row) unless `skip_bad_images`,
    and then the skipped ids are returned under `skipped`.
    """
    from engine.ensemble import non_finite_images
    from engine.runs import atomic_write_text

    classes = check_same_classes(refs)
    how = combine_how or refs[0].config.eval.combine
    started = time.perf_counter()
    stacks, ids = [], None
    for ref in refs:
        logits, member_ids = member_image_logits(ref, Path(images_dir), options,
                                                 "skip" if skip_bad_images else "error")
        if ids is not None and member_ids != ids:
            raise DataError(f"{images_dir}: members read different images (another size or channel count "
                            "skipped other files); predict with members trained at the same resolution")
        ids = member_ids
        stacks.append(logits)
    assert ids is not None
    for ref, logits in zip(refs, stacks):
        bad = non_finite_images(logits)
        if bad and (len(refs) > 1 or bad == len(ids)):
            raise CheckpointError(f"{ref.label} gives NaN/Inf outputs for {bad} of {len(ids)} images (diverged or "
                                  "damaged weights); its predictions mean nothing"
                                  + ("; leave it out of the ensemble" if len(refs) > 1 else ""))
        if bad:
            log.warning("%s gives NaN/Inf outputs for %d of %d images; their predicted class is arbitrary",
                        ref.label, bad, len(ids))
    predictions = combine(torch.cat(stacks), how).predictions.tolist()
    labels = [classes[p] for p in predictions]
    data = refs[0].config.data
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_csv, submission_text(ids, labels, (data.file_column, data.label_column)))
    counts = {name: labels.count(name) for name in classes}
    from engine.data.decode import is_image_file

    every_id = {p.stem for p in Path(images_dir).expanduser().iterdir() if p.is_file() and is_image_file(p)}
    return {"out": str(out_csv), "images": len(ids), "members": [r.label for r in refs],
            "tta": effective_tta(refs[0], options), "combine": how, "predicted_counts": counts,
            "skipped": sorted(every_id - set(ids)), "seconds": round(time.perf_counter() - started, 3)}
