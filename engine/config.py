"""The config tree: the one definition of what a preset may say.

Every field is typed, defaulted and documented in one line (its `doc` metadata). Raw dicts from YAML are
validated by `from_dict`, which rejects unknown keys (naming the file, the dotted key and the closest valid
key) and wrong types (naming the key, the value and the expected type). This module imports neither torch
nor any UI library, so validating a preset is fast.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from engine.errors import ConfigError, did_you_mean

SCHEMA_VERSION = 1
MAX_INT = 2**63 - 1        # integers beyond int64 are refused (no field needs them; torch cannot hold them)
MAX_IMAGE_SIZE = 4096      # data.image_size: one 4096 px RGB image is 48 MiB; larger is a typo, refused early
LATEST = "latest"          # wherever a run is named, this word is the newest run: no run may be named so
_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def doc(text: str, default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with a one-line description (shown by `presets show` and errors)."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class DataConfig:
    """Where the images come from, at which resolution, and how they are split."""

    source: Literal[
        "digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "svhn", "folder", "csv"
    ] = doc("dataset source: embedded digits, a torchvision dataset, an image folder or CSV + folder", "digits")
    root: str | None = doc("folder of the dataset (folder/csv sources) or download folder; None = data dir", None)
    csv_file: str | None = doc("CSV file with one row per image (csv source), relative to root or absolute", None)
    file_column: str = doc("CSV column holding the image file name (csv source)", "Id")
    label_column: str = doc("CSV column holding the label, a class name or an integer (csv source)", "Category")
    file_suffix: str = doc("suffix appended to CSV file names that lack one, e.g. '.jpg' (csv source)", "")
    classes: list[str] | None = doc("class names in order (folder/csv sources); a label or class folder not in it "
                                    "is an error; None = the sorted names found", None)
    test_root: str | None = doc("explicit labelled test set in the same layout as root; None = hold out", None)
    test_csv_file: str | None = doc("CSV of the explicit test set (csv source)", None)
    image_size: int | None = doc("training resolution in pixels (square); None = the source's native size", None)
    channels: int | None = doc("image channels, 1 (gray) or 3 (RGB); None = the source's native channels", None)
    val_fraction: float = doc("fraction of the training images held out for validation (stratified)", 0.1)
    test_fraction: float = doc("fraction held out as test set when the source has no test split", 0.2)
    split_seed: int = doc("seed of the train/val/test and k-fold splits", 0)
    folds: int | None = doc("number of stratified k-fold folds over train+val; None = plain holdout", None)
    fold: int = doc("which fold (0-based) is the validation set when folds is set", 0)
    on_bad_image: Literal["error", "skip"] = doc("a corrupt/unreadable image: stop with its path, or skip it", "error")
    max_image_pixels: int = doc("an image file larger than this many pixels (width x height, after a JPEG's fast "
                                "downscale) is refused unread, like a corrupt one (a decompression bomb)",
                                40_000_000)
    sampler: Literal["shuffle", "weighted"] = doc("epoch order: a permutation, or weighted by inverse class count", "shuffle")
    class_weighted_loss: bool = doc("weight the loss by inverse class frequency (for imbalanced data)", False)
    limit: int | None = doc("use a seeded, class-stratified subset of N train+val images (quick runs); None = all", None)
    device_budget_gb: float = doc("keep the image table on the GPU when it is smaller than this (GiB)", 8.0)


@dataclass
class ModelConfig:
    """The architecture; `options` go to the registered builder and are checked against its signature."""

    name: str = doc("registered model name, see `imgcls-console presets list model`", "convnet")
    dropout: float = doc("dropout probability before the classifier head", 0.0)
    pretrained: str | None = doc("torchvision weights name or a local .safetensors/.pth file; None = random", None)
    freeze_backbone_epochs: int = doc("train only the head for this many first epochs (with pretrained; the "
                                      "backbone's batch-norm statistics still adapt)", 0)
    options: dict[str, Any] = doc("architecture options passed to the builder (layers, widths, ...)", factory=dict)


@dataclass
class AugmentConfig:
    """Per-sample random augmentation of training batches (on the device) and normalization."""

    ops: list[dict[str, Any]] = doc("training augmentations in order, each {op: name, p: prob, ...params}", factory=list)
    normalize: Literal["none", "uniform", "dataset", "imagenet", "custom"] = doc(
        "normalization: none, uniform (mean .5 std .5), dataset statistics, ImageNet, or custom mean/std", "dataset"
    )
    mean: list[float] | None = doc("per-channel mean in [0, 1] for normalize: custom", None)
    std: list[float] | None = doc("per-channel std in [0, 1] for normalize: custom", None)
    mixup_alpha: float = doc("mixup Beta(alpha, alpha) parameter; 0 = off", 0.0)
    cutmix_alpha: float = doc("cutmix Beta(alpha, alpha) parameter; 0 = off", 0.0)
    mix_prob: float = doc("probability that a batch gets mixup/cutmix when either is on", 1.0)


@dataclass
class OptimConfig:
    """The optimizer."""

    name: Literal["sgd", "adam", "adamw"] = doc("optimizer", "sgd")
    lr: float = doc("peak learning rate (per batch as configured, not scaled by batch size)", 0.1)
    momentum: float = doc("SGD momentum", 0.9)
    nesterov: bool = doc("SGD Nesterov momentum", False)
    weight_decay: float = doc("L2 weight decay (decoupled for adamw)", 0.0)
    betas: list[float] = doc("Adam/AdamW beta1, beta2", factory=lambda: [0.9, 0.999])
    eps: float = doc("Adam/AdamW epsilon", 1e-8)
    no_decay_norm_bias: bool = doc("exclude norm and bias parameters from weight decay", False)
    grad_clip: float | None = doc("clip the global gradient norm to this value; None = off", None)
    accumulate: int = doc("accumulate gradients over this many batches per optimizer step", 1)


@dataclass
class ScheduleSegment:
    """A schedule appended after a run's planned epochs when it is extended (`resume --extend-schedule`): it
    starts from the LR the schedule had reached, so no epoch's LR changes and the LR never jumps."""

    epochs: int = doc("length of the segment in epochs", 1)
    name: Literal["constant", "continue", "step", "multistep", "exponential", "polynomial", "cosine"] = doc(
        "shape from the LR reached: constant holds it, continue carries the schedule before on (cosine rises "
        "again past t_max), the others decay from it", "constant")
    step_size: int = doc("step: epochs between LR drops (counted from the segment's start)", 30)
    milestones: list[int] = doc("multistep: epochs (counted from the segment's start) of the LR drops",
                                factory=list)
    gamma: float = doc("step/multistep/exponential: LR multiplier per drop (per epoch for exponential)", 0.1)
    power: float = doc("polynomial: decay exponent (to 0 at the segment's end)", 1.0)
    min_lr: float = doc("cosine: LR at the segment's end", 0.0)


@dataclass
class ScheduleConfig:
    """The learning-rate schedule; epochs-based fields count epochs even when stepped per batch."""

    name: Literal[
        "constant", "step", "multistep", "exponential", "polynomial", "cosine", "onecycle", "plateau"
    ] = doc("schedule shape", "constant")
    interval: Literal["epoch", "step"] = doc("update the LR after every epoch or after every optimizer step", "epoch")
    step_size: int = doc("step: epochs between LR drops (counted after warmup)", 30)
    milestones: list[int] = doc("multistep: epochs (counted after warmup) at which the LR is multiplied by gamma",
                                factory=list)
    gamma: float = doc("step/multistep/exponential: LR multiplier per drop (per epoch for exponential)", 0.1)
    power: float = doc("polynomial: decay exponent", 1.0)
    t_max: int | None = doc("cosine: epochs of one half-cosine; None = all epochs after warmup", None)
    min_lr: float = doc("cosine/plateau: LR floor", 0.0)
    pct_start: float = doc("onecycle: fraction of training spent increasing the LR", 0.3)
    warmup_epochs: float = doc("linear warmup length in epochs (fractions allowed with interval: step)", 0.0)
    warmup_start_factor: float = doc("warmup starts at lr * this factor", 0.1)
    metric: str = doc("plateau: validation metric watched (val_loss or val_acc)", "val_loss")
    mode: Literal["min", "max"] = doc("plateau: whether the metric should go down or up", "min")
    factor: float = doc("plateau: LR multiplier on a plateau", 0.1)
    patience: int = doc("plateau: epochs without improvement before the LR drops", 5)
    cooldown: int = doc("plateau: epochs to wait after a drop before watching again", 0)
    threshold: float = doc("plateau: relative improvement that counts", 1e-4)
    plan_epochs: int | None = doc("epochs the schedule is spread over (cosine, polynomial, onecycle); None = "
                                  "train.epochs. `resume` sets it when a run's length changes, so finished "
                                  "epochs keep their LR", None)
    extend: list[ScheduleSegment] = doc("segments appended after plan_epochs by `resume --set train.epochs=N` "
                                        "(see --extend-schedule), in order", factory=list)


@dataclass
class EarlyStopConfig:
    """Stop when a validation metric stops improving."""

    metric: str | None = doc("validation metric to watch (val_loss, val_acc); None = off", None)
    mode: Literal["min", "max"] = doc("min for losses, max for accuracies", "min")
    patience: int = doc("epochs without improvement before stopping", 10)
    min_delta: float = doc("smallest change that counts as improvement", 0.0)


@dataclass
class CheckpointConfig:
    """Which checkpoints a run keeps."""

    last: bool = doc("keep the checkpoint of the last finished epoch (needed for resume)", True)
    best_metric: str = doc("metric that picks the `best` checkpoint (val_acc, val_loss)", "val_acc")
    best_mode: Literal["min", "max"] = doc("whether the best metric is minimised or maximised", "max")
    every: int = doc("also keep a checkpoint every N epochs (epoch-NNN); 0 = off", 0)
    keep: int = doc("newest N periodic epoch checkpoints kept; 0 = keep all", 0)


@dataclass
class TrainConfig:
    """The loop: length, batch size, device, precision, reproducibility and checkpoints."""

    epochs: int = doc("number of training epochs", 10)
    batch_size: int = doc("training images per batch", 64)
    eval_batch_size: int = doc("images per batch for validation/test", 512)
    device: str = doc("auto (CUDA when available), cpu, cuda or cuda:N", "auto")
    precision: Literal["fp32", "bf16", "fp16"] = doc("autocast precision on CUDA (CPU runs use fp32)", "fp32")
    channels_last: bool = doc("use channels_last memory format on CUDA", True)
    compile: bool = doc("torch.compile the model (CUDA)", False)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = doc(
        "torch.compile mode; reduce-overhead uses CUDA graphs (fewer kernel launches for small models)", "default")
    cpu_threads: int | None = doc("torch threads for CPU runs; None = one less than the cores (at least 1)", None)
    seed: int = doc("seed for weights, sampling and augmentation", 0)
    deterministic: bool = doc("bit-stable runs: deterministic algorithms, no cudnn autotune", False)
    label_smoothing: float = doc("cross-entropy label smoothing", 0.0)
    ema_decay: float = doc("exponential moving average of weights per step; 0 = off", 0.0)
    drop_last: bool = doc("drop the ragged last training batch (static shapes)", True)
    log_every: int = doc("emit a step event every N optimizer steps", 50)
    early_stop: EarlyStopConfig = doc("early stopping", factory=EarlyStopConfig)
    checkpoint: CheckpointConfig = doc("checkpoint policy", factory=CheckpointConfig)


@dataclass
class EvalConfig:
    """Evaluation defaults."""

    tta: str = doc("test-time augmentation spec, e.g. none, flip, flip+shift, random:10", "none")
    combine: Literal["logits", "probs", "vote"] = doc("how TTA views / ensemble members are combined", "logits")
    use_ema: bool = doc("evaluate EMA weights when the checkpoint has them", True)


@dataclass
class ExperimentConfig:
    """A fully resolved experiment: what `config.yaml` in a run folder holds."""

    name: str = doc("experiment name (run folders are named after it)", "experiment")
    experiment: str | None = doc("the experiment a renamed run was composed from (`train --name NAME` keeps it "
                                 "here); unset when the run bears its experiment's name", None)
    description: str = doc("one line about the experiment", "")
    data: DataConfig = doc("data", factory=DataConfig)
    model: ModelConfig = doc("model", factory=ModelConfig)
    augment: AugmentConfig = doc("augmentation", factory=AugmentConfig)
    optim: OptimConfig = doc("optimizer", factory=OptimConfig)
    schedule: ScheduleConfig = doc("learning-rate schedule", factory=ScheduleConfig)
    train: TrainConfig = doc("training loop", factory=TrainConfig)
    eval: EvalConfig = doc("evaluation", factory=EvalConfig)


EPOCH_METRICS = ("val_loss", "val_acc", "train_loss", "train_acc")  # what best/early-stop/plateau may watch

SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "augment": AugmentConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}
PRESET_KINDS = ("data", "model", "augment", "optim", "schedule", "experiment")


# ---------------------------------------------------------------- validation


class ConfigErrors(ConfigError):
    """Several problems of one file found in one pass: a head line, then one line per problem (each naming its
    file and dotted key)."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        head = f"{source}: {len(problems)} errors" if source else f"{len(problems)} errors"
        super().__init__("\n".join([f"{head}:", *(f"  {problem}" for problem in problems)]))


def problems_of(exc: ConfigError) -> list[str]:
    """The problems a ConfigError reports: each of a ConfigErrors, else its one message."""
    return list(exc.problems) if isinstance(exc, ConfigErrors) else [str(exc)]


def raise_problems(problems: list[str], source: str | None = None) -> None:
    """Raise nothing for no problem, a ConfigError for one (its message unchanged), ConfigErrors for several."""
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        raise ConfigError(unique[0])
    if unique:
        raise ConfigErrors(unique, source)


def _where(source: str | None, dotted: str) -> str:
    return f"{source}: {dotted}" if source else dotted


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(inner)}"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, dotted: str, source: str | None, problems: list[str] | None = None) -> Any:
    """Check `value` against type `tp`; return it (ints widened to float). Raise ConfigError naming the key; a
    section's problems go to `problems` (when given) and its bad keys keep their defaults."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(source, dotted)}: expected a mapping, got {value!r}")
        if problems is not None:
            return _build(tp, value, dotted, source, problems)
        found: list[str] = []
        section = _build(tp, value, dotted, source, found)
        raise_problems(found, source)
        return section
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, dotted, source)
            except ConfigError:
                continue
        raise _type_error(value, tp, dotted, source)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        allowed = [str(a) for a in typing.get_args(tp)]
        hint = did_you_mean(str(value), allowed)
        raise ConfigError(
            f"{_where(source, dotted)}: {value!r} is not allowed; expected {_type_name(tp)}{hint}"
        )
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _type_error(value, tp, dotted, source)
        (inner,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, inner, f"{dotted}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(value, tp, dotted, source)
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(value, tp, dotted, source)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:
                raise ConfigError(f"{_where(source, dotted)}: {value} is out of range (at most {MAX_INT} in size)")
            return value
        raise _type_error(value, tp, dotted, source)
    if tp is float:
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if abs(value) <= 1e308 else math.inf
        elif isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
            number = float(value)  # YAML 1.1 reads `1e-4` (no dot) as a string; accept it as the number it is
        if number is None:
            raise _type_error(value, tp, dotted, source)
        if not math.isfinite(number):
            raise ConfigError(f"{_where(source, dotted)}: {value!r} is not a finite number")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # `classes: [0, 1, 2]`: YAML reads bare digits as numbers
        raise _type_error(value, tp, dotted, source)
    raise ConfigError(f"{_where(source, dotted)}: unsupported field type {tp!r}")


def _type_error(value: Any, tp: Any, dotted: str, source: str | None) -> ConfigError:
    return ConfigError(
        f"{_where(source, dotted)}: {value!r} ({type(value).__name__}) is not a valid value; expected {_type_name(tp)}"
    )


def _build(cls: type, raw: dict[str, Any], prefix: str, source: str | None, problems: list[str]) -> Any:
    """`cls` from `raw`; every unknown key and bad value is added to `problems` (the field keeps its default), so
    one pass names them all."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            problems.append(f"{_where(source, dotted)}: unknown key{did_you_mean(str(key), names)}")
            continue
        try:
            kwargs[key] = _coerce(value, hints[key], dotted, source, problems)
        except ConfigError as exc:
            problems.extend(problems_of(exc))
    return cls(**kwargs)


def section_from_dict(kind: str, raw: dict[str, Any], source: str | None = None) -> Any:
    """Validate one section (e.g. the content of a `presets/optim/*.yaml`) into its dataclass; every problem of
    it is listed at once."""
    return _coerce(raw, SECTION_TYPES[kind], kind, source)


def build_checked(raw: dict[str, Any], source: str | None = None, *,
                  semantics: bool = True) -> tuple[ExperimentConfig, list[str]]:
    """The experiment config of `raw` with every problem found (bad keys keep their defaults), without raising."""
    raw = {k: v for k, v in raw.items() if k not in ("schema_version", "content_hash")}
    problems: list[str] = []
    config = _build(ExperimentConfig, raw, "", source, problems)
    if semantics:
        problems.extend(semantic_problems(config, source))
    return config, problems


def from_dict(raw: dict[str, Any], source: str | None = None, *, semantics: bool = True) -> ExperimentConfig:
    """Validate a fully composed experiment dict into an `ExperimentConfig` (unknown keys rejected; every
    problem listed at once).

    `semantics=False` checks keys and types only (for one override of several, whose partners come later).
    """
    config, problems = build_checked(raw, source, semantics=semantics)
    raise_problems(problems, source)
    return config


def to_dict(config: Any) -> dict[str, Any]:
    """The plain-dict form of a config (what `config.yaml` holds); an unset `experiment` is left out."""
    plain = dataclasses.asdict(config)
    if isinstance(config, ExperimentConfig) and config.experiment is None:
        del plain["experiment"]
    return plain


def renamed(config: ExperimentConfig, name: str) -> ExperimentConfig:
    """`config` as a run named `name` (`--name`), keeping the name of the experiment it was composed from."""
    if name == config.name:
        return config
    if name == LATEST:
        raise ConfigError(f"--name {LATEST!r}: that word stands for the newest run wherever a run is named; "
                          "choose another name")
    return dataclasses.replace(config, name=name, experiment=config.experiment or config.name)


def with_absolute_paths(config: ExperimentConfig) -> ExperimentConfig:
    """The config with its relative paths (data.root, data.test_root, a local model.pretrained file) made
    absolute against the working directory, so a run's config.yaml names the same files from anywhere."""
    import os

    def absolute(path: str | None, *, must_exist: bool = False) -> str | None:
        if path is None:
            return None
        expanded = os.path.expanduser(path)
        if must_exist and not os.path.exists(expanded):
            return path  # not a file here: a torchvision weights name
        return os.path.abspath(expanded)

    data = dataclasses.replace(config.data, root=absolute(config.data.root),
                               test_root=absolute(config.data.test_root))
    model = dataclasses.replace(config.model, pretrained=absolute(config.model.pretrained, must_exist=True))
    return dataclasses.replace(config, data=data, model=model)


DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"


def check_semantics(config: ExperimentConfig, source: str | None = None) -> None:
    """Checks that span a field's type: ranges and cross-field rules; every failed one is listed."""
    raise_problems(semantic_problems(config, source), source)


def semantic_problems(config: ExperimentConfig, source: str | None = None) -> list[str]:
    """The failed range and cross-field rules of a config, each naming the file and the dotted key."""
    problems: list[str] = []

    def need(ok: bool, dotted: str, message: str) -> None:
        if not ok:
            problems.append(f"{_where(source, dotted)}: {message}")

    need(config.train.epochs >= 1, "train.epochs", "must be at least 1")
    need(re.fullmatch(DEVICE_PATTERN, config.train.device) is not None, "train.device",
         f"{config.train.device!r} is not a device; one of auto, cpu, cuda, cuda:N, mps")
    need(config.model.freeze_backbone_epochs >= 0, "model.freeze_backbone_epochs", "must be >= 0 (0 = off)")
    need(config.train.log_every >= 1, "train.log_every", "must be at least 1")
    need(config.train.checkpoint.every >= 0, "train.checkpoint.every", "must be >= 0 (0 = off)")
    need(config.train.checkpoint.keep >= 0, "train.checkpoint.keep", "must be >= 0 (0 = keep all)")
    for dotted, metric in (("train.checkpoint.best_metric", config.train.checkpoint.best_metric),
                           ("train.early_stop.metric", config.train.early_stop.metric),
                           ("schedule.metric", config.schedule.metric)):
        need(metric is None or metric in EPOCH_METRICS, dotted,
             f"{metric!r} is not an epoch metric; one of {', '.join(EPOCH_METRICS)}"
             f"{did_you_mean(str(metric), EPOCH_METRICS)}")
    need(config.train.batch_size >= 1, "train.batch_size", "must be at least 1")
    need(config.train.eval_batch_size >= 1, "train.eval_batch_size", "must be at least 1")
    need(config.optim.lr > 0, "optim.lr", "must be positive")
    need(config.optim.accumulate >= 1, "optim.accumulate", "must be at least 1")
    need(len(config.optim.betas) == 2, "optim.betas", "needs two values")
    need(0.0 <= config.model.dropout < 1.0, "model.dropout", "must be in [0, 1)")
    need(0.0 <= config.data.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)")
    need(0.0 <= config.data.test_fraction < 1.0, "data.test_fraction", "must be in [0, 1)")
    need(config.data.channels in (None, 1, 3), "data.channels", "must be 1, 3 or null")
    if config.data.classes is not None:
        names = [str(c) for c in config.data.classes]
        need(config.data.source in ("folder", "csv"), "data.classes",
             f"only folder and csv sources take declared classes (source is {config.data.source})")
        need(bool(names), "data.classes", "is empty; list the class names or leave it null")
        need(len(set(names)) == len(names), "data.classes",
             f"names {sorted({n for n in names if names.count(n) > 1})} more than once")
    need(config.data.image_size is None or 4 <= config.data.image_size <= MAX_IMAGE_SIZE, "data.image_size",
         f"must be between 4 and {MAX_IMAGE_SIZE} pixels (got {config.data.image_size})")
    need(config.data.limit is None or config.data.limit >= 1, "data.limit", "must be at least 1 (null = all)")
    need(config.data.max_image_pixels >= 16, "data.max_image_pixels", "must be at least 16")
    need(config.data.device_budget_gb >= 0, "data.device_budget_gb", "must be >= 0")
    if config.data.folds is not None:
        need(config.data.folds >= 2, "data.folds", "must be at least 2")
        need(0 <= config.data.fold < config.data.folds, "data.fold", f"must be in [0, {config.data.folds})")
    if config.augment.normalize == "custom":
        need(config.augment.mean is not None and config.augment.std is not None, "augment.normalize",
             "custom needs augment.mean and augment.std")
    need(0.0 <= config.train.ema_decay < 1.0, "train.ema_decay", "must be in [0, 1)")
    need(config.augment.mixup_alpha >= 0, "augment.mixup_alpha", "must be >= 0 (0 = off)")
    need(config.augment.cutmix_alpha >= 0, "augment.cutmix_alpha", "must be >= 0 (0 = off)")
    need(0.0 <= config.augment.mix_prob <= 1.0, "augment.mix_prob", "must be in [0, 1]")
    need(0.0 <= config.train.label_smoothing < 1.0, "train.label_smoothing", "must be in [0, 1)")
    if config.schedule.name == "multistep":
        need(bool(config.schedule.milestones), "schedule.milestones", "multistep needs at least one milestone")
    need(config.name != LATEST, "name", f"{LATEST!r} stands for the newest run wherever a run is named; "
         "choose another name")
    return problems


def field_docs(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """(dotted key, type name, default, doc) for every leaf field of a config class."""
    rows: list[tuple[str, str, Any, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(field_docs(tp, dotted + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((dotted, _type_name(tp), default, f.metadata.get("doc", "")))
    return rows
