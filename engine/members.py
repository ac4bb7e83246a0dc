"""Checkpoints as evaluation members: `RUN[:CHECKPOINT]` references, their models, data and cached logits.

A member's predictions on a split are the logits of every TTA view, stacked (V, N, C). They are cached under
`<run>/evals/cache/<key>.safetensors`, keyed by the sha256 of the weights evaluated, the split, the views,
the data and augmentation config and the device-independent settings, so the same (checkpoint, split, TTA)
is never recomputed. The views are stored uncombined: any `combine` reuses the same cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine import checkpoint as ckpt
from engine.config import ExperimentConfig, from_dict, to_dict
from engine.errors import CheckpointError, ConfigError, DataError, EngineError, RunError, classes_mismatch
from engine.progress import Progress, or_default

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class CheckpointRef:
    """One checkpoint of one run, with its meta and the config it was trained with."""

    run_dir: Path
    name: str
    meta: dict[str, Any]
    config: ExperimentConfig
    snapshot: ckpt.Checkpoint | None = field(default=None, repr=False, compare=False)  # see `pinned`

    @property
    def folder(self) -> Path:
        """The checkpoint folder."""
        return self.run_dir / "checkpoints" / self.name

    @property
    def label(self) -> str:
        """`run:checkpoint`, how results name this member."""
        return f"{self.run_dir.name}:{self.name}"

    @property
    def classes(self) -> list[str]:
        """Class names in training order."""
        return [str(c) for c in self.meta.get("classes") or []]

    @property
    def has_ema(self) -> bool:
        """Whether EMA weights were saved with this checkpoint."""
        return ckpt.EMA in self.meta.get("sha256", {})


def split_ref(text: str) -> tuple[str, str | None]:
    """`run:epoch-012` -> ("run", "epoch-012"); a name without a checkpoint part -> (name, None)."""
    head, sep, tail = text.rpartition(":")
    if sep and head and tail and "/" not in tail and "\\" not in tail:
        return head, tail
    return text, None


def parse_ref(runs_root: Path, text: str) -> CheckpointRef:
    """Resolve `RUN[:CHECKPOINT]` (checkpoint default: best, else last) into a CheckpointRef."""
    from engine.runs import resolve_run

    run_text, name = split_ref(text)
    return checkpoint_ref(resolve_run(runs_root, run_text), name, shown_as=text)


def checkpoint_ref(run_dir: Path, name: str | None = None, *, shown_as: str | None = None) -> CheckpointRef:
    """The checkpoint `name` of a run folder (None: best, else last), with its meta and training config."""
    available = [m.get("name") for m in ckpt.list_checkpoints(run_dir)]
    asked = name
    if name is None:  # a damaged `best` is named as such, never passed over for `last`
        name = "best" if "best" in available or ckpt.checkpoint_dir(run_dir, "best").is_dir() else "last"
    epoch_number = re.fullmatch(r"(?:epoch-?)?(\d+)", name)
    if epoch_number:  # `epoch-15`, `epoch15` and `15` all mean the periodic checkpoint epoch-015
        name = f"epoch-{int(epoch_number.group(1)):03d}"
    folder = ckpt.checkpoint_dir(run_dir, name)
    if name not in available:
        if folder.is_dir():  # there, but its record is damaged: say so, naming the file
            ckpt.read_meta(folder)
        raise CheckpointError(missing_checkpoint_message(run_dir, name if asked else None, available,
                                                         shown_as or str(run_dir)))
    meta, config = read_record(run_dir, name)
    if not meta.get("classes"):
        raise CheckpointError(f"{folder / ckpt.META}: records no class names; cannot evaluate it")
    return CheckpointRef(run_dir, name, meta, config)


RECORD_READS = 5  # a checkpoint saved again while its record is read is read again, this many times at most


def read_record(run_dir: Path, name: str) -> tuple[dict[str, Any], ExperimentConfig]:
    """The meta of a run's checkpoint `name` and the config it was trained with (its own config.yaml, verified,
    else the run's), of one version: a save of that name while they are read (a run still training) makes them
    be read again, so a record is never checked against the files of another version."""
    from engine.presets import load_mapping

    for _attempt in range(RECORD_READS):
        record = ckpt.load_checkpoint(ckpt.checkpoint_dir(run_dir, name), with_state=False, with_weights=False)
        own = ckpt.CONFIG in record.meta["sha256"]  # its config.yaml, verified with the meta it was read with
        path = record.path / ckpt.CONFIG if own else run_dir / "config.yaml"
        try:
            config = from_dict(load_mapping(path), str(path))
        except ConfigError:
            if _same_version(run_dir, name, record.meta):
                raise
            continue  # the folder was swapped while the file was parsed: read the new version
        if _same_version(run_dir, name, record.meta):
            return record.meta, config
    raise CheckpointError(f"{run_dir / 'checkpoints' / name}: saved again each time its record was read (a run "
                          "saving continuously?); read it again")


def _same_version(run_dir: Path, name: str, meta: dict[str, Any]) -> bool:
    """Whether checkpoint `name` still holds the version whose record is `meta` (every save writes a new one)."""
    try:
        return ckpt.read_meta(ckpt.checkpoint_dir(run_dir, name)) == meta
    except CheckpointError:
        return False


def pinned(ref: CheckpointRef) -> ckpt.Checkpoint:
    """The checkpoint's files read into memory once, as one version verified against its sha256 record: what an
    evaluation of `ref` hashes and loads. A save of the same name since `ref` was read (a run still training)
    is taken whole: `ref.meta` becomes its record (so results name the epoch evaluated), never a mix of two."""
    for _attempt in range(RECORD_READS):
        if ref.snapshot is not None:
            return ref.snapshot
        loaded = ckpt.load_checkpoint(ckpt.checkpoint_dir(ref.run_dir, ref.name), with_state=False)
        same_config = loaded.meta["sha256"].get(ckpt.CONFIG) == ref.meta["sha256"].get(ckpt.CONFIG)
        if same_config:
            ref.meta, ref.snapshot = loaded.meta, loaded
        else:  # a resume changed the run's config since: its record is read again, then its files
            ref.meta, ref.config = read_record(ref.run_dir, ref.name)
    raise CheckpointError(f"{ref.label}: its config changed each time it was read (a run resumed again and "
                          "again?); evaluate again")


def release(ref: CheckpointRef) -> None:
    """Drop the files `pinned` holds in memory (an evaluation of many checkpoints keeps one at a time)."""
    ref.snapshot = None


def missing_checkpoint_message(run_dir: Path, asked: str | None, available: list[Any], shown_as: str) -> str:
    """Why a checkpoint cannot be found: the one asked for (or the default, best else last) and what the run has."""
    names = [str(a) for a in available]  # by epoch, so the last one is the latest
    wanted = repr(asked) if asked else "'best' (the default) or 'last'"
    if not names:
        return f"{shown_as}: run {run_dir.name} has no checkpoint {wanted}: it has no checkpoints at all"
    hint = "" if asked else f"; name one, e.g. {run_dir.name}:{names[-1]}"
    return f"{shown_as}: run {run_dir.name} has no checkpoint {wanted} (it has: {', '.join(names)}){hint}"


ALL_CHECKPOINTS = "all"


def all_checkpoint_refs(run_dir: Path, *, shown_as: str | None = None) -> list[CheckpointRef]:
    """Every checkpoint of a run (`RUN:all`), by epoch; `best` and `last` only when no epoch checkpoint
    holds the same weights, so each distinct set of weights is listed once."""
    metas = sorted(ckpt.list_checkpoints(run_dir),
                   key=lambda m: (m.get("epoch", 0), not str(m.get("name", "")).startswith("epoch-"),
                                  m.get("name") != "best"))
    damaged = ckpt.damaged_checkpoints(run_dir)
    for name, reason in damaged.items():
        log.warning("%s: checkpoint %s left out: %s", shown_as or run_dir.name, name, reason)
    if not metas:
        more = f" that can be read ({len(damaged)} damaged)" if damaged else ""
        raise CheckpointError(f"{shown_as or run_dir}: run {run_dir.name} has no checkpoints{more}")
    refs = [checkpoint_ref(run_dir, str(m["name"]), shown_as=shown_as) for m in metas]
    return distinct_weights(refs)[0]


def weights_digest(ref: CheckpointRef) -> str:
    """The sha256 of the weights an evaluation of `ref` reads by default (EMA when the run evaluates with it)."""
    digests = ref.meta.get("sha256", {})
    return str(digests.get(ckpt.EMA) if ref.has_ema and ref.config.eval.use_ema else digests.get(ckpt.WEIGHTS))


def distinct_weights(refs: list[CheckpointRef]) -> tuple[list[CheckpointRef], list[tuple[str, str]]]:
    """`refs` without repeats of the same weights (best and last are often an epoch checkpoint again), and
    (dropped, kept) label pairs saying which repeated which."""
    kept: dict[str, CheckpointRef] = {}
    repeats = []
    for ref in refs:
        digest = weights_digest(ref)
        if digest in kept:
            repeats.append((ref.label, kept[digest].label))
        else:
            kept[digest] = ref
    return list(kept.values()), repeats


def resolve_refs(runs_root: Path, texts: list[str]) -> tuple[list[CheckpointRef], list[str]]:
    """Checkpoint references from `RUN[:CHECKPOINT]` texts: a k-fold group name stands for its fold runs (each at
    the checkpoint given), `RUN:all` for every checkpoint of a run; the same weights named twice (best =
    epoch-046) count once. Returns the references and one note per repeat dropped."""
    from engine.compare import expand_targets

    refs = []
    for text in texts:
        run_text, name = split_ref(text)
        for run in expand_targets(runs_root, [run_text]):
            if name == ALL_CHECKPOINTS:
                refs.extend(all_checkpoint_refs(run, shown_as=text))
            else:
                refs.append(checkpoint_ref(run, name, shown_as=text))
    refs, repeats = distinct_weights(refs)
    return refs, [f"{dropped} given twice; counted once" if dropped == kept else
                  f"{dropped} holds the same weights as {kept}; counted once" for dropped, kept in repeats]


def names_several(runs_root: Path, text: str) -> bool:
    """Whether `text` stands for several checkpoints by its form (RUN:all or a k-fold group), however many
    distinct ones it finds."""
    from engine.compare import group_match

    run_text, name = split_ref(text)
    return name == ALL_CHECKPOINTS or group_match(runs_root, run_text) is not None


@dataclass
class EvalOptions:
    """How a member is evaluated: split, TTA, weights, device and `--set` overrides of its config."""

    split: str = "test"
    tta: str | None = None          # None = the checkpoint config's eval.tta
    use_ema: bool | None = None     # None = the checkpoint config's eval.use_ema
    device: str | None = None       # None = the checkpoint config's train.device
    overrides: list[str] = field(default_factory=list)


FROZEN_KEYS = ("model",)  # sections an evaluation may not change: the weights fix them


def eval_config(ref: CheckpointRef, options: EvalOptions) -> ExperimentConfig:
    """The checkpoint's config with the evaluation overrides applied (model changes refused)."""
    if options.split not in SPLITS:
        raise ConfigError(f"split {options.split!r}: expected one of {', '.join(SPLITS)}")
    if not options.overrides:
        return ref.config
    from engine.presets import apply_overrides

    base = to_dict(ref.config)
    changed = from_dict(apply_overrides(base, list(options.overrides)), "--set")
    for section in FROZEN_KEYS:
        if to_dict(changed)[section] != base[section]:
            raise ConfigError(f"--set {section}.*: an evaluation cannot change the architecture of {ref.label}")
    return changed


def effective_tta(ref: CheckpointRef, options: EvalOptions) -> str:
    """The TTA spec used: the option, else the checkpoint config's eval.tta."""
    return options.tta if options.tta is not None else ref.config.eval.tta


def effective_ema(ref: CheckpointRef, options: EvalOptions) -> bool:
    """Whether EMA weights are evaluated: wanted (option, else config) and present in the checkpoint."""
    wanted = options.use_ema if options.use_ema is not None else ref.config.eval.use_ema
    return bool(wanted and ref.has_ema)


def cache_key(ref: CheckpointRef, options: EvalOptions, config: ExperimentConfig, views: list[str]) -> str:
    """sha256 of everything that determines a member's view logits (not the device: fp32 on CPU and CUDA agree
    to float rounding, so they share an entry)."""
    use_ema = effective_ema(ref, options)
    weights_sha = verified_weights_digest(ref, ckpt.EMA if use_ema else ckpt.WEIGHTS)
    body = {"weights": weights_sha, "split": options.split, "views": views, "use_ema": use_ema,
            "data": to_dict(config.data), "augment": to_dict(config.augment), "seed": config.train.seed,
            "classes": ref.classes, "precision": _effective_precision(config, options), "version": 1}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def verified_weights_digest(ref: CheckpointRef, file: str) -> str:
    """The sha256 of the weights file an evaluation of `ref` loads: that of the files `pinned` read and checked
    against their record (a cache keyed by it can never answer for damaged or replaced weights)."""
    snapshot = pinned(ref)
    if file == ckpt.EMA and snapshot.ema is None:
        raise CheckpointError(f"{ref.folder / file}: missing from the checkpoint")
    return str(snapshot.meta["sha256"][file])


def eval_device(config: ExperimentConfig, options: EvalOptions) -> Any:
    """--device, else the run's train.device; a run trained on CUDA is evaluated on the CPU where no GPU is."""
    from engine.runtime import pick_device

    name = options.device or config.train.device
    if options.device is None and name.startswith("cuda") and not torch.cuda.is_available():
        name = "cpu"
    return pick_device(name)


def _effective_precision(config: ExperimentConfig, options: EvalOptions) -> str:
    """fp32 on the CPU and for fp32 configs; the autocast precision on CUDA (its logits differ slightly)."""
    return config.train.precision if eval_device(config, options).type == "cuda" else "fp32"


def check_same_classes(refs: list[CheckpointRef]) -> list[str]:
    """The shared class list of several checkpoints; a clear error when any differs."""
    if not refs:
        raise RunError("no checkpoints given")
    first = refs[0]
    for other in refs[1:]:
        if other.classes != first.classes:
            raise CheckpointError(classes_mismatch(first.classes, f"checkpoint {first.label}",
                                                   other.classes, f"checkpoint {other.label}"))
    return first.classes


@dataclass
class ViewLogits:
    """A member's predictions on a split: logits of every view (V, N, C) on the CPU, and the labels."""

    logits: torch.Tensor
    labels: torch.Tensor
    views: list[str]
    key: str
    cached: bool


def cache_path(ref: CheckpointRef, key: str) -> Path:
    """Where a member's view logits are cached."""
    return ref.run_dir / "evals" / "cache" / f"{key}.safetensors"


def read_cache(path: Path, views: list[str], key: str) -> ViewLogits | None:
    """A cached entry, or None when absent or unreadable (then it is recomputed)."""
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
    except Exception:  # a torn or foreign file is recomputed, never trusted
        return None
    if "logits" not in tensors or "labels" not in tensors or tensors["logits"].shape[0] != len(views):
        return None
    return ViewLogits(tensors["logits"], tensors["labels"], views, key, True)


def write_cache(path: Path, result: ViewLogits, run_dir: Path | None = None) -> None:
    """Store view logits atomically (tmp file, then rename). Inside `run_dir` only while it exists: a run
    deleted meanwhile is never re-created (a RunError says so)."""
    from safetensors.torch import save_file

    ensure_inside(run_dir, path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")  # threads never share it
    save_file({"logits": result.logits.contiguous(), "labels": result.labels.contiguous()}, str(tmp),
              metadata={"views": json.dumps(result.views)})
    os.replace(tmp, path)


def ensure_inside(run_dir: Path | None, folder: Path) -> None:
    """Make `folder` (inside `run_dir`) without ever making `run_dir` itself: a run folder deleted while it was
    evaluated is a RunError, and stays deleted."""
    if run_dir is None:
        folder.mkdir(parents=True, exist_ok=True)
        return
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: the run folder was deleted while it was evaluated; nothing was written")
    current = run_dir
    for part in folder.relative_to(run_dir).parts:
        current = current / part
        try:
            current.mkdir(exist_ok=True)
        except FileNotFoundError:
            raise RunError(f"{run_dir}: the run folder was deleted while it was evaluated; nothing was "
                           "written") from None


def view_logits(ref: CheckpointRef, options: EvalOptions, progress: Progress | None = None) -> ViewLogits:
    """The member's view logits on `options.split`: from the cache, else computed (reporting progress per batch,
    cancellable between batches) and cached. Warnings about the TTA are logged and collected in `progress`.
    The checkpoint is read once, whole (`pinned`): a run saving it again meanwhile changes nothing here."""
    progress = or_default(progress)
    progress.check()
    try:
        return _view_logits(ref, options, progress)
    finally:
        release(ref)


def tta_warnings(ref: CheckpointRef, options: EvalOptions) -> list[str]:
    """What to tell a person about the TTA this checkpoint is evaluated (or predicts) with: random views of a run
    trained without augmentations are the plain image; a flip or shift training never applied may cost accuracy."""
    from engine.augment import tta_views
    from engine.augment.tta import unseen_views

    tta = effective_tta(ref, options)
    views = tta_views(tta)
    warnings = []
    if "random" in views and not eval_config(ref, options).augment.ops:
        warnings.append(f"{ref.label}: tta {tta}: the run has no training augmentations (augment.ops is empty), so "
                        "each random view is the plain image; use flip/shift views, or an augment preset")
    unseen = unseen_views(views, ref.config.augment.ops)
    if unseen:
        warnings.append(f"{ref.label}: tta {tta}: training never applied {' or '.join(unseen)}, so those views may "
                        "cost accuracy; compare with tta none")
    return warnings


def _view_logits(ref: CheckpointRef, options: EvalOptions, progress: Progress) -> ViewLogits:
    """view_logits of one pinned version of the checkpoint."""
    from engine.augment import tta_views

    listed_epoch = ref.meta.get("epoch")
    pinned(ref)
    note_live_checkpoint(ref, listed_epoch, progress)
    config = eval_config(ref, options)
    views = tta_views(effective_tta(ref, options))
    for warning in tta_warnings(ref, options):
        progress.warn(warning, log)
    key = cache_key(ref, options, config, views)
    path = cache_path(ref, key)
    cached = read_cache(path, views, key)
    if cached is not None:
        progress.report(f"{ref.label}: cached predictions", 1, 1)
        return cached
    from engine.inference import compute_split_logits

    logits, labels = compute_split_logits(ref, config, options, views, progress=progress)
    result = ViewLogits(logits, labels, views, key, False)
    write_cache(path, result, ref.run_dir)
    return result


REWRITTEN_CHECKPOINTS = ("last", "best")  # names a training run saves again and again


def note_live_checkpoint(ref: CheckpointRef, listed_epoch: Any, progress: Progress) -> None:
    """Say which epoch was evaluated when the run is still training (its checkpoints keep changing) or the
    checkpoint was saved again since it was listed."""
    from engine.runs import read_status

    try:
        training = read_status(ref.run_dir).get("state") in ("running", "starting")
    except EngineError:  # an unreadable status only costs the note
        training = False
    epoch = ref.meta.get("epoch")
    rewritten = ref.name in REWRITTEN_CHECKPOINTS  # epoch-NNN checkpoints never change once saved
    if (training and rewritten) or epoch != listed_epoch:
        why = ("the run is still training" if training
               else f"it was saved again since it was listed (epoch {listed_epoch})")
        progress.warn(f"{ref.label}: {why}; evaluated its checkpoint of epoch {epoch}, read whole as saved then", log)


def split_indices(dataset: Any, split: str, where: str) -> torch.Tensor:
    """The index array of a split; a clear error when it is empty."""
    indices = {"train": dataset.train_idx, "val": dataset.val_idx, "test": dataset.test_idx}[split]
    if len(indices) == 0:
        hint = ("evaluate another split (--split val) or set data.test_fraction / data.test_root" if split == "test"
                else "set data.val_fraction")
        raise DataError(f"{where}: the {split} split is empty; {hint}")
    return indices
