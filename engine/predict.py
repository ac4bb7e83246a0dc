"""Predictions for an unlabeled image folder, by one checkpoint or an ensemble: the submission CSV."""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import torch

from engine.config import DataConfig
from engine.errors import CheckpointError, ConfigError, DataError
from engine.members import (CheckpointRef, EvalOptions, check_same_classes, effective_tta, eval_config,
                            tta_warnings)
from engine.metrics import combine

log = logging.getLogger(__name__)


def member_image_logits(ref: CheckpointRef, images_dir: Path, options: EvalOptions,
                        on_bad_image: str = "error") -> tuple[torch.Tensor, list[str]]:
    """One member's view logits (V, N, C) for the images of a folder, and the image ids (sorted)."""
    from engine.augment import tta_views
    from engine.data import load_unlabeled
    from engine.inference import build_runtime, is_out_of_memory, out_of_memory_error, run_views

    config = eval_config(ref, options)
    for warning in tta_warnings(ref, options):  # as eval says them
        log.warning("%s", warning)
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


ID_STYLES = ("auto", "name", "stem")  # how `predict` writes image ids: follow the training CSV, 10000.jpg, 10000


def _training_csv_values(data: DataConfig) -> tuple[Path, list[str]]:
    """The training CSV and the values of its file column (OSError/csv.Error/DataError when it cannot be read)."""
    from engine.data.paths import resolve_under

    if data.root is None or data.csv_file is None:
        raise DataError("data.root / data.csv_file are not set")
    path = resolve_under(Path(data.root).expanduser(), data.csv_file)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if data.file_column not in (reader.fieldnames or []):
            raise DataError(f"no column `{data.file_column}` (data.file_column)")
        return path, [(row.get(data.file_column) or "").strip() for row in reader]


def id_style(data: DataConfig, wanted: str = "auto") -> tuple[str, str]:
    """How `predict` writes image ids, and why: `name` keeps the extension (10000.jpg), `stem` drops it (10000).
    `auto` follows the run's training CSV (`name` when most of its file names carry an image extension); a run
    not trained on a CSV gets `stem`, and so does one whose CSV cannot be read here (with a warning)."""
    from engine.data.decode import IMAGE_SUFFIXES

    if wanted not in ID_STYLES:
        raise ConfigError(f"--ids {wanted!r}: expected one of {', '.join(ID_STYLES)}")
    if wanted != "auto":
        return wanted, f"as --ids {wanted} asks"
    if data.source != "csv":
        return "stem", f"since the run was not trained on a CSV (data.source {data.source})"
    try:
        path, values = _training_csv_values(data)
    except (OSError, csv.Error, DataError, UnicodeDecodeError) as exc:
        log.warning("the run's training CSV (data.csv_file %s) cannot be read here (%s); ids are written without "
                    "extension: pass --ids name to keep it", data.csv_file, getattr(exc, "strerror", None) or exc)
        return "stem", "since the training CSV could not be read"
    with_suffix = sum(Path(v).suffix.lower() in IMAGE_SUFFIXES for v in values)
    style = "name" if values and with_suffix * 2 > len(values) else "stem"
    example = values[0] if values else ""
    return style, f"as in the training CSV {path} (e.g. {example})"


def output_ids(stems: list[str], images_dir: Path, style: str) -> list[str]:
    """The ids written for images known by their stems: the stems, or the full file names for style `name`."""
    if style != "name":
        return stems
    names = image_names(images_dir)
    return [names[stem] for stem in stems]


def image_names(images_dir: Path) -> dict[str, str]:
    """Image file name by stem, for the images of a folder (stems are unique: `load_unlabeled` checks it)."""
    from engine.data.decode import is_image_file

    given = Path(images_dir).expanduser()
    if given.is_file():  # one image
        return {given.stem: given.name}
    return {p.stem: p.name for p in given.iterdir() if p.is_file() and is_image_file(p)}


def submission_text(ids: list[str], labels: list[str], header: tuple[str, str]) -> str:
    """CSV text: a header row, then one (image id, predicted class name) row per image."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(ids, labels))
    return buffer.getvalue()


def predict_folder(refs: list[CheckpointRef], images_dir: Path, out_csv: Path | None, options: EvalOptions,
                   combine_how: str | None = None, *, skip_bad_images: bool = False,
                   ids: str = "auto") -> dict[str, Any]:
    """Predict every image of `images_dir` with the ensemble of `refs` and write `out_csv` (id, label name).

    The header is the training CSV's column names (data.file_column, data.label_column: Id,Category by default);
    the ids keep or drop the file extension as `ids` says (see `id_style`: auto follows the training CSV).
    An unreadable image stops the prediction (a submission must have every row) unless `skip_bad_images`,
    and then the skipped file names are returned under `skipped`. With `out_csv` None nothing is written: the
    CSV text is returned under `csv`.
    """
    from engine.ensemble import non_finite_images
    from engine.runs import atomic_write_text

    classes = check_same_classes(refs)
    how = combine_how or refs[0].config.eval.combine
    data = refs[0].config.data
    style, style_why = id_style(data, ids)
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
    written = output_ids(ids, Path(images_dir), style)
    text = submission_text(written, labels, (data.file_column, data.label_column))
    if out_csv is not None:
        out_csv = Path(out_csv)
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_csv, text)
    counts = {name: labels.count(name) for name in classes}
    predicted = set(ids)
    skipped = sorted(name for stem, name in image_names(Path(images_dir)).items() if stem not in predicted)
    return {"out": str(out_csv) if out_csv is not None else None, "csv": None if out_csv is not None else text,
            "images": len(ids), "members": [r.label for r in refs],
            "tta": effective_tta(refs[0], options), "combine": how, "predicted_counts": counts,
            "ids": style, "ids_why": style_why, "first_id": written[0] if written else None,
            "skipped": skipped,
            "seconds": round(time.perf_counter() - started, 3)}
