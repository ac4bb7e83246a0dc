"""Transfer learning: a new run that starts from a checkpoint's weights, on the same data or on another data set.

The architecture must be the checkpoint's (`model.name`, `model.options`); the data may change. Every tensor is
loaded, except the classifier head when the new data's classes differ from the checkpoint's (names, order or
count): that head keeps its fresh initialisation and is named in the `weights_loaded` event. What cannot work is
refused in one line naming the way out: another architecture, another channel count (no adapter maps the first
convolution's weights), or a data set whose files are not given.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.config import ExperimentConfig, to_dict
from engine.errors import CheckpointError

if TYPE_CHECKING:
    import torch

ARCHITECTURE_KEYS = ("name", "options")  # of the model section: what the weights' tensors are shaped by
DATA_FILES = {"folder": ("root",), "csv": ("root", "csv_file")}  # data keys a source cannot do without
PLACEHOLDERS = {"root": "DIR", "csv_file": "FILE"}


def architecture_changes(saved: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    """`model.KEY: old -> new` for each architecture key the new config changes."""
    old_model, new_model = to_dict(saved.model), to_dict(new.model)
    return [f"model.{key}: {old_model[key]!r} -> {new_model[key]!r}" for key in ARCHITECTURE_KEYS
            if old_model[key] != new_model[key]]


def missing_data_files(saved: ExperimentConfig, new: ExperimentConfig) -> str | None:
    """The `--set` that gives the new config's data source its files, when it lacks them (the checkpoint's own
    values when it used the same kind of source); None when nothing is missing."""
    keys = DATA_FILES.get(new.data.source, ())
    new_data, old_data = to_dict(new.data), to_dict(saved.data)
    if all(new_data[key] is not None for key in keys):
        return None
    same_kind = saved.data.source == new.data.source

    def value(key: str) -> str:
        given = new_data[key] if new_data[key] is not None else old_data[key] if same_kind else None
        return str(given) if given is not None else PLACEHOLDERS[key]

    pairs = " ".join(f"data.{key}={value(key)}" for key in keys)
    return f"{new.data.source} data needs its files: pass --set {pairs}"


def saved_input(folder: Path, key: str) -> int | None:
    """What a checkpoint folder's meta records of its input (`channels`, `image_size`); None when it does not say."""
    from engine.checkpoint import read_meta

    try:
        value = read_meta(folder).get("inputs", {}).get(key)
    except (CheckpointError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_finetune(saved: ExperimentConfig, new: ExperimentConfig, source: Path) -> None:
    """Refuse, before any run folder exists and in one line, a fine-tune from checkpoint folder `source` that
    cannot work; each problem names its way out."""
    problems = []
    changes = architecture_changes(saved, new)
    if changes:
        problems.append("its weights fit only its own architecture and the new config changes "
                        + "; ".join(changes) + " (keep the run's model section, or train that model from scratch "
                        "with `imgcls-console train`)")
    missing = missing_data_files(saved, new)
    if missing:
        problems.append(missing)
    channels = saved_input(source, "channels")
    if channels is not None and new.data.channels not in (None, channels):
        problems.append(f"its weights take {channels}-channel images and the new config asks for "
                        f"data.channels={new.data.channels}: --set data.channels={channels} converts the images "
                        "(no adapter maps the weights)")
    if problems:
        raise CheckpointError(f"cannot fine-tune from {source.parent.parent.name}:{source.name}: " + "; ".join(problems))


def load_start_weights(model: torch.nn.Module, spec: str, classes: list[str]) -> list[str]:
    """Load `model.pretrained` into `model` for data of `classes`; returns the head tensors left new.

    A checkpoint of this tool trained on other classes (names, order or count) gives every tensor but the head;
    weights from elsewhere keep their head when its shape fits."""
    from engine.checkpoint import saved_classes
    from engine.models import load_pretrained
    from engine.models.weights import ShapeMismatch

    path = Path(spec).expanduser()
    saved = saved_classes(path.parent) if path.is_file() else None
    try:
        return load_pretrained(model, spec, num_classes=len(classes),
                               replace_head=saved is not None and saved != classes)
    except ShapeMismatch as exc:
        size = saved_input(path.parent, "image_size") if path.is_file() else None
        if exc.hinted or size is None:
            raise
        raise ShapeMismatch(f"{exc}; the weights were trained on {size}x{size} images, and a model that flattens "
                            f"its features needs that size: --set data.image_size={size}", hinted=True) from None


def describe_loaded(source: str, replaced: list[str], classes: int | None) -> str:
    """One line saying what a `weights_loaded` event did: every tensor loaded, or which head tensors are new."""
    if not replaced:
        return f"weights: every tensor loaded from {source}"
    for_whom = f"the {classes} classes of this data" if classes else "this data's classes"
    return f"weights: new head for {for_whom} ({', '.join(replaced)}); every other tensor loaded from {source}"
