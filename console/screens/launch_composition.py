"""What the Launch screen composes: an experiment and its `--set` overrides, one per key, and the fields it
edits in place. Plain data and the engine's own words; no widgets, no torch at import."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import ExperimentConfig

SECTION_KINDS = ("data", "model", "augment", "optim", "schedule")
# (dotted key, label): the fields people change most, edited in place
FIELDS = (("optim.lr", "lr"), ("train.epochs", "epochs"), ("train.batch_size", "batch"),
          ("optim.weight_decay", "wd"), ("model.dropout", "dropout"), ("train.precision", "precision"),
          ("train.seed", "seed"), ("name", "name"))
PRECISIONS = ("fp32", "bf16", "fp16")
PRESET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def override_key(text: str) -> str:
    """The key an override sets: `optim.lr=0.1` -> optim.lr; `model=x` and `model.preset=x` -> model."""
    key = text.partition("=")[0].strip()
    section = key.removesuffix(".preset")
    return section if section in SECTION_KINDS else key


def field_id(key: str) -> str:
    """The widget id of a field: optim.lr -> field-optim-lr."""
    return "field-" + key.replace(".", "-").replace("_", "-")


def config_value(config: ExperimentConfig, key: str) -> Any:
    """The value at a dotted key of a config."""
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def optim_summary(config: ExperimentConfig) -> str:
    """The optimizer as it will run (a preset's description tells its own lr, not the experiment's)."""
    optim = config.optim
    parts = [f"{optim.name} lr {optim.lr:g}"]
    if optim.name == "sgd":
        parts.append(f"momentum {optim.momentum:g}" + (" nesterov" if optim.nesterov else ""))
    else:
        parts.append(f"betas {optim.betas[0]:g}/{optim.betas[1]:g}")
    parts.append(f"wd {optim.weight_decay:g}")
    if optim.accumulate > 1:
        parts.append(f"accumulate {optim.accumulate}")
    return ", ".join(parts)


def without_source(error: str, overrides: list[str]) -> str:
    """An engine error about a composition with these overrides, without the `--set …: ` it starts with (the
    CLI's words for where the value came from): `--set train.epochs=-1: train.epochs: must be at least 1` →
    `train.epochs: must be at least 1`."""
    for source in ("--set " + " --set ".join(overrides), *(f"--set {text}" for text in overrides)):
        if overrides and error.startswith(source + ": "):
            return error[len(source) + 2:]
    return error


def field_override(key: str, text: str) -> str:
    """The override a field's text makes; the run name is quoted so that YAML keeps it a string."""
    return f"{key}={json.dumps(text)}" if key == "name" else f"{key}={text}"


@dataclass
class Composition:
    """An experiment (preset name or YAML file) and its overrides, one per key."""

    experiment: str
    overrides: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, experiment: str, overrides: list[str]) -> Composition:
        """From `--set` style overrides (a later one for the same key wins)."""
        return cls(experiment, {override_key(text): text for text in overrides})

    def without_source(self, error: str) -> str:
        """An engine error about this composition in the app's words (see `without_source`)."""
        return without_source(error, self.as_list())

    def set(self, key: str, override: str | None) -> None:
        """Set or (with None) drop the override of `key`."""
        self.overrides.pop(key, None)
        if override is not None:
            self.overrides[key] = override

    def as_list(self) -> list[str]:
        """The overrides in applying order: section swaps first, so that field values land on the new preset."""
        sections = [text for key, text in self.overrides.items() if key in SECTION_KINDS]
        return sections + [text for key, text in self.overrides.items() if key not in SECTION_KINDS]

    def edits_of(self, kind: str) -> list[str]:
        """`lr 0.05`, … : the overrides that change keys inside section `kind` (a preset's description no
        longer tells their values)."""
        return [f"{key.removeprefix(kind + '.')} {text.partition('=')[2].strip()}"
                for key, text in self.overrides.items() if key.startswith(kind + ".")]

    def extra(self) -> list[str]:
        """Overrides the pickers and fields do not show (given by the CLI or the palette)."""
        shown = {*SECTION_KINDS, *(key for key, _ in FIELDS)}
        return [text for key, text in self.overrides.items() if key not in shown]


def preview_key(*parts: Any) -> str:
    """A stable text key of plain data (what a preview was computed for)."""
    return json.dumps(parts, sort_keys=True, default=str)


def lr_test_key(config: ExperimentConfig) -> str:
    """What an LR range test's result depends on: everything it trains with but the LR it sweeps and the
    schedule it replaces."""
    from engine.config import to_dict

    optim = {key: value for key, value in to_dict(config.optim).items() if key != "lr"}
    return preview_key(to_dict(config.data), to_dict(config.model), to_dict(config.augment), optim,
                       config.train.batch_size, config.train.precision, config.train.seed)


def save_user_preset(config: ExperimentConfig, name: str, overwrite: bool) -> Path:
    """Write a resolved config as the user's experiment preset `name` (validated and placed by the engine's
    import, which refuses to shadow a built-in preset)."""
    from engine.errors import ConfigError
    from engine.presets import builtin_dir, import_preset, resolved_yaml, user_dir

    if (builtin_dir() / "experiment" / f"{name}.yaml").is_file():
        raise ConfigError(f"a built-in experiment preset is named {name!r}; choose another name")
    target = user_dir() / "experiment" / f"{name}.yaml"
    if target.exists() and not overwrite:
        raise ConfigError(f"user preset {target} exists; tick 'replace' to overwrite it")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / f"{name}.yaml"
        source.write_text(resolved_yaml(config), encoding="utf-8")
        return import_preset(source, kind="experiment", name=name, overwrite=overwrite)
