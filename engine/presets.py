"""Finding, loading, composing, exporting and importing YAML presets (safe loading only).

Search order for a preset name: an explicit file path, the user folder (`IMGCLS_PRESETS_DIR`, else the
platform config dir), then the built-in presets shipped in the `presets` package.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from engine import config as cfg
from engine.errors import ConfigError, did_you_mean, unknown_name
from engine.preset_yaml import load_mapping, parse_yaml, preset_text, yaml_problem

log = logging.getLogger(__name__)

EXPERIMENT_KEYS = {"name", "experiment", "description", "base", *cfg.SECTION_TYPES}
# every kind of preset file: the config's (composed into runs) and sweep specs (read by `sweep run`)
ALL_KINDS = (*cfg.PRESET_KINDS, "sweep")
# folders searched before the user's for the current context only (`presets_overlay`: a bundle being checked)
_OVERLAYS: ContextVar[tuple[Path, ...]] = ContextVar("preset_overlays", default=())


@dataclass(frozen=True)
class PresetInfo:
    """One preset file found on the search path."""

    kind: str
    name: str
    path: Path
    origin: str  # "user", "builtin" or "user, shadows built-in"
    description: str


def builtin_dir() -> Path:
    """The folder of the built-in presets (inside the installed package)."""
    return Path(str(resources.files("presets")))


def user_dir() -> Path:
    """The user preset folder: `IMGCLS_PRESETS_DIR`, else the platform's config folder."""
    explicit = os.environ.get("IMGCLS_PRESETS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "imgcls-console" / "presets"


PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a preset name: a file name, never a path


def list_presets(kind: str | None = None) -> list[PresetInfo]:
    """Every preset on the search path (user presets first; a user preset hides a built-in one of its name)."""
    kinds = [kind] if kind else list(ALL_KINDS)
    found: dict[tuple[str, str], PresetInfo] = {}
    for origin, root in (("user", user_dir()), ("builtin", builtin_dir())):
        for k in kinds:
            folder = root / k
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.yaml")):
                key = (k, path.stem)
                if key not in found:
                    found[key] = PresetInfo(k, path.stem, path, origin, _description(path))
                elif origin == "builtin":
                    found[key] = dataclasses.replace(found[key], origin="user, shadows built-in")
    return sorted(found.values(), key=lambda p: (ALL_KINDS.index(p.kind), p.name))


def _description(path: Path) -> str:
    try:
        raw = load_mapping(path)
    except ConfigError:
        return "(invalid)"
    text = raw.get("description", "")
    if isinstance(text, str) and text:
        return text
    for line in preset_text(path).splitlines():  # else the file's leading comment
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def _looks_like_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or os.sep in name or "/" in name


def find_preset(kind: str, name: str, relative_to: Path | None = None) -> Path:
    """Resolve a preset name (or file path) of `kind` to a file; a missing one lists the available names. A
    relative path named inside a preset file (`relative_to`: its folder) is taken from that folder first, then
    from the working directory."""
    if kind not in ALL_KINDS:
        raise ConfigError(f"unknown preset kind {kind!r}; kinds are {', '.join(ALL_KINDS)}")
    if _looks_like_path(name):
        path = Path(name).expanduser()
        beside = relative_to / path if relative_to is not None and not path.is_absolute() else None
        if beside is not None and beside.is_file():
            return beside
        if path.is_file():
            return path
        where = f" (looked in {relative_to} and in the working directory)" if beside is not None else ""
        raise ConfigError(f"preset file {name} does not exist{where}")
    for root in (*_OVERLAYS.get(), user_dir(), builtin_dir()):
        path = root / kind / f"{name}.yaml"
        if path.is_file():
            if root == user_dir() and (builtin_dir() / kind / f"{name}.yaml").is_file():
                _note_shadowing(kind, name, path)
            return path
    names = [p.name for p in list_presets(kind)]
    raise ConfigError(unknown_name(f"{kind} preset", name, names, f"imgcls-console presets list {kind}"))


@contextmanager
def presets_overlay(root: Path) -> Iterator[None]:
    """Within this block (this thread or task only), presets in `root/<kind>/` are found before the user's: a
    shared sweep's bundled presets are checked together with its spec before any of them is imported."""
    token = _OVERLAYS.set((root, *_OVERLAYS.get()))
    try:
        yield
    finally:
        _OVERLAYS.reset(token)


_SHADOWING_NOTED: set[Path] = set()


def _note_shadowing(kind: str, name: str, path: Path) -> None:
    """Say once per process that a user preset is used in place of the built-in one of the same name."""
    if path not in _SHADOWING_NOTED:
        _SHADOWING_NOTED.add(path)
        log.warning("%s preset %r is your %s, which shadows the built-in one of that name", kind, name, path)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "options":
            merged[key] = _deep_merge(merged[key], value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **copy.deepcopy(value)}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_section_preset(kind: str, name: str, named_in: str | None = None,
                        relative_to: Path | None = None) -> dict[str, Any]:
    """Load and validate one section preset; errors name its file and dotted key (and where it was named;
    `relative_to`: the folder of the file that named it, see `find_preset`)."""
    try:
        path = find_preset(kind, name, relative_to)
    except ConfigError as exc:
        if named_in is None:
            raise
        raise ConfigError(f"{named_in}: {exc}") from exc
    raw = preset_fields(kind, load_mapping(path), str(path))
    validate_section(kind, raw, str(path))
    return raw


# A model preset's `sized_for`: the input it is meant for, at which `presets list model` counts its parameters.
SIZED_FOR_KEYS = ("classes", "channels", "size")
DEFAULT_SIZED_FOR = (10, 3, 32)  # a model preset that does not say: CIFAR-10's


def preset_fields(kind: str, raw: dict[str, Any], source: str) -> dict[str, Any]:
    """A section preset's fields: its mapping without what describes the preset, `description` (any kind) and a
    model's `sized_for` (checked here, so a bad one names its file and key)."""
    raw = dict(raw)
    raw.pop("description", None)
    if kind == "model" and "sized_for" in raw:
        sized_for(raw.pop("sized_for"), source)
    return raw


def sized_for(value: Any, source: str) -> tuple[int, int, int]:
    """(classes, channels, size) from a model preset's `sized_for: {classes: 10, channels: 1, size: 28}`."""
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: sized_for: expected a mapping of classes, channels and size, got {value!r}")
    unknown = sorted(set(value) - set(SIZED_FOR_KEYS), key=str)
    if unknown:
        raise ConfigError(f"{source}: sized_for.{unknown[0]}: unknown key; keys are {', '.join(SIZED_FOR_KEYS)}"
                          f"{did_you_mean(str(unknown[0]), SIZED_FOR_KEYS)}")
    numbers = []
    for key in SIZED_FOR_KEYS:
        number = value.get(key)
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise ConfigError(f"{source}: sized_for.{key}: expected a positive integer, got {number!r}")
        numbers.append(number)
    return numbers[0], numbers[1], numbers[2]


def model_preset_input(path: Path) -> tuple[tuple[int, int, int], bool]:
    """The input a model preset file is sized for (classes, channels, size), and whether it says so (else the
    default, CIFAR-10's)."""
    raw = load_mapping(path)
    if "sized_for" not in raw:
        return DEFAULT_SIZED_FOR, False
    return sized_for(raw["sized_for"], str(path)), True


def validate_section(kind: str, raw: dict[str, Any], source: str) -> Any:
    """One section preset's fields (no `description`) as its validated dataclass; errors name `source`."""
    section = cfg.section_from_dict(kind, raw, source)
    _check_section(kind, section, source)
    return section


def _check_section(kind: str, section: Any, source: str) -> None:
    """The checks owned by other modules for one section (augmentation ops, model options), naming `source`."""
    if kind == "augment":
        from engine.augment import check_ops

        check_ops(section.ops, source)
    elif kind == "model":
        from engine.models import check_model_config

        check_model_config(section, source)


def _resolve_section(kind: str, value: Any, source: str, folder: Path | None = None) -> dict[str, Any]:
    """An experiment's section: a preset name, {preset: name, ...overrides} or plain fields (`folder`: that of
    the file it is in, for a relative preset path)."""
    if isinstance(value, str):
        if kind not in cfg.PRESET_KINDS:
            raise ConfigError(f"{source}: {kind}: expected a mapping of fields ({kind} has no presets)")
        return load_section_preset(kind, value, f"{source}: {kind}", folder)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {kind}: expected a preset name or a mapping, got {value!r}")
    value = dict(value)
    preset = value.pop("preset", None)
    if preset is None:
        return value
    if kind not in cfg.PRESET_KINDS:
        raise ConfigError(f"{source}: {kind}.preset: {kind} has no presets")
    if not isinstance(preset, str):
        raise ConfigError(f"{source}: {kind}.preset: expected a preset name, got {preset!r}")
    return _deep_merge(load_section_preset(kind, preset, f"{source}: {kind}.preset", folder), value)


def _compose_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The composed raw dict of an experiment file (its `base` chain and section presets merged); every
    problem of the file (keys, types, ranges; with any problem, also the deep checks) is listed at once."""
    composed, problems = _compose_collecting(path, seen)
    config, found = cfg.build_checked(composed, str(path))
    problems += found
    if problems:  # the file is refused anyway: name everything wrong with it, the deep checks included
        problems += [p for p in _deep_problems(config, str(path)) if not _same_key(p, problems, str(path))]
    cfg.raise_problems(problems, str(path))
    return composed


def _compose_collecting(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], list[str]]:
    """The composed raw dict of an experiment file and the problems met composing it (unknown top-level keys,
    sections or presets that cannot be used: those sections are left out)."""
    if path.resolve() in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"{path}: base experiments form a cycle: {chain}")
    raw = load_mapping(path)
    problems = [f"{path}: {key}: unknown key{did_you_mean(str(key), sorted(EXPERIMENT_KEYS))}" for key in raw
                if key not in EXPERIMENT_KEYS and key not in ("schema_version", "content_hash")]
    composed: dict[str, Any] = {}
    base = raw.get("base")
    if base is not None and not isinstance(base, str):
        problems.append(f"{path}: base: expected an experiment preset name, got {base!r}")
    elif base is not None:
        try:
            base_path = find_preset("experiment", base, path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: base: {exc}") from None
        composed, base_problems = _compose_collecting(base_path, (*seen, path.resolve()))
        problems += base_problems
        composed.pop("description", None)
        composed.pop("name", None)  # a child is named after its own file unless it says otherwise
        composed.pop("experiment", None)
    for key, value in raw.items():
        if key in cfg.SECTION_TYPES:
            try:
                section = _resolve_section(key, value, str(path), path.parent)
            except ConfigError as exc:
                problems += cfg.problems_of(exc)
                continue
            if isinstance(value, str) or (isinstance(value, dict) and "preset" in value):
                composed[key] = section  # a section chosen by preset replaces the inherited one
            else:
                composed[key] = _deep_merge(composed.get(key, {}), section)
        elif key in ("name", "experiment", "description"):
            composed[key] = value
    composed.setdefault("name", path.stem)
    return composed, problems


def _same_key(problem: str, problems: list[str], source: str | None) -> bool:
    """Whether `problem` ("file: dotted.key: message") is about a key some entry of `problems` already names
    (optim.lr is range-checked by the config and again by the optimizer)."""
    file = f"{source}: " if source else ""
    key = file + problem.removeprefix(file).split(": ", 1)[0]
    return any(other.startswith(key + ": ") for other in problems)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `optim.lr=0.2` into (["optim", "lr"], 0.2); the value is parsed as safe YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. optim.lr=0.2")
    key, _, value_text = text.partition("=")
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"--set {text}: empty key")
    try:
        value = parse_yaml(value_text) if value_text.strip() else ""
    except RecursionError:
        raise ConfigError(f"--set {text}: value nested too deeply") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text}: value is not valid YAML ({yaml_problem(exc)})") from None
    return keys, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--set` overrides to a composed raw dict; each is validated, errors name the override. Section swaps
    (`schedule=multistep-10`) apply first, wherever they are given, so the fields set beside them land on the
    new preset instead of being dropped by it."""
    result = copy.deepcopy(raw)
    parsed = [(text, *parse_override(text)) for text in overrides]

    def is_swap(keys: list[str]) -> bool:  # `--set model=small-cnn` or `--set model.preset=small-cnn`
        return keys[0] in cfg.PRESET_KINDS and keys[-1:] in (["preset"], [keys[0]]) and len(keys) <= 2

    for text, keys, value in sorted(parsed, key=lambda item: not is_swap(item[1])):  # stable: given order kept
        if is_swap(keys):
            if not isinstance(value, str):
                raise ConfigError(f"--set {text}: expected a {keys[0]} preset name")
            result[keys[0]] = load_section_preset(keys[0], value, f"--set {text}")
            continue
        node = result
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: {key} is not a section")
            node = child
        node[keys[-1]] = value
        cfg.from_dict(result, f"--set {text}", semantics=False)
    if overrides:
        cfg.from_dict(result, "--set " + " --set ".join(overrides))
    return result


def resolve_experiment(name: str, overrides: list[str] | None = None) -> cfg.ExperimentConfig:
    """Compose an experiment preset (name or file) with `--set` overrides into a validated config."""
    path = find_preset("experiment", name)
    raw = apply_overrides(_compose_raw(path), overrides or [])
    config = cfg.from_dict(raw, str(path))
    try:
        validate_deep(config, str(path))
    except ConfigError as exc:  # a problem of a key the user set names the --set, not the preset file
        blamed = [_blamed_on_override(p, str(path), overrides or []) for p in cfg.problems_of(exc)]
        cfg.raise_problems(blamed, "--set" if all(p.startswith("--set ") for p in blamed) else str(path))
    return config


def _blamed_on_override(problem: str, source: str, overrides: list[str]) -> str:
    """`FILE: model.options.x: ...` as `--set model.options.x=1: model.options.x: ...` when a `--set` gave that key
    (or the section or field above it, or a field under it)."""
    if not problem.startswith(f"{source}: "):
        return problem
    rest = problem.removeprefix(f"{source}: ")
    key = rest.split(": ", 1)[0]
    for text in reversed(overrides):  # the last --set of a key is the one that counts
        given = text.partition("=")[0].strip()
        if given == key or key.startswith(given + ".") or given.startswith(key + "."):
            return f"--set {text}: {rest}"
    return problem


def validate_deep(config: cfg.ExperimentConfig, source: str | None) -> None:
    """Checks owned by other modules: augmentation ops, model options, optimizer and schedule ranges (these
    import torch), so `presets validate` refuses what a run would refuse; each failed check is listed."""
    cfg.raise_problems(_deep_problems(config, source), source)


def _deep_problems(config: cfg.ExperimentConfig, source: str | None) -> list[str]:
    """The first problem of each deep check (ops, model, optimizer, schedule), each naming file and key."""
    from engine.augment import check_ops
    from engine.augment.tta import tta_views
    from engine.models import check_model_config
    from engine.optim import check_optim_config, check_schedule_config

    file = f"{source}: " if source else ""
    checks = [  # (check, prefix): the optimizer's checks name the key only, so the file is added
        (lambda: check_ops(config.augment.ops, source), ""),
        (lambda: check_model_config(config.model, source), ""),
        (lambda: check_optim_config(config.optim), file),
        (lambda: check_schedule_config(config.schedule, epochs=config.train.epochs, steps_per_epoch=1,
                                       base_lr=config.optim.lr), file),
        (lambda: tta_views(config.eval.tta), file),  # the run's evaluations use it: refused now, not after training
    ]
    problems: list[str] = []
    for check, prefix in checks:
        try:
            check()
        except ConfigError as exc:
            problems += [prefix + p for p in cfg.problems_of(exc) if not _same_key(prefix + p, problems, source)]
    return problems


def detect_kind(path: Path, raw: dict[str, Any]) -> str:
    """Which kind of preset a file holds: its folder name, else the one section whose fields hold most of its keys
    (so a misspelled field gets a did-you-mean), else an experiment (a misspelled section key gets one too)."""
    if path.parent.name in cfg.PRESET_KINDS:
        return path.parent.name
    keys = set(raw) - {"description"}
    if keys & (EXPERIMENT_KEYS - {"name", "description"}):
        return "experiment"
    if "sized_for" in keys:  # only a model preset says the input it is meant for
        return "model"
    known = {kind: len(keys & {f.name for f in dataclasses.fields(section)})
             for kind, section in cfg.SECTION_TYPES.items() if kind in cfg.PRESET_KINDS}
    most = max(known.values(), default=0)
    if most == 0:
        return "experiment"
    fitting = [kind for kind, count in known.items() if count == most]
    if len(fitting) > 1:  # a section holding most keys (the rest misspelled) decides; a tie needs --kind
        raise ConfigError(f"{path}: could be a {' or '.join(fitting)} preset; pass --kind")
    return fitting[0]


def check_kind(kind: str) -> str:
    """`kind` when it is a preset kind (a sweep too); else a ConfigError listing them."""
    if kind not in ALL_KINDS:
        raise ConfigError(f"--kind {kind!r}: not a preset kind; kinds are {', '.join(ALL_KINDS)}"
                          f"{did_you_mean(str(kind), ALL_KINDS)}")
    return kind


def check_name(name: str, what: str = "--name") -> str:
    """`name` when it is a plain preset name (letters, digits, `.`, `_`, `-`; no folder, no leading dot), else a
    ConfigError: a name never reaches outside the presets folder."""
    if not PLAIN_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"{what} {name!r}: not a plain preset name (letters, digits, '.', '_' and '-', starting "
                          "with a letter or digit, at most 100 characters; no folders)")
    return name


def is_sweep(path: Path, raw: dict[str, Any], kind: str | None) -> bool:
    """Whether a preset file holds a sweep spec: said so, in a `sweep/` folder, or with `params` and `base`."""
    return kind == "sweep" or (kind is None and (path.parent.name == "sweep" or {"params", "base"} <= set(raw)))


def validate_file(path: Path, kind: str | None = None) -> tuple[str, Any]:
    """Validate a preset file of any kind (a sweep spec too, with the presets it bundles); returns (kind,
    validated object)."""
    if kind is not None:
        check_kind(kind)
    raw = load_mapping(path)
    if is_sweep(path, raw, kind):
        from engine.sweep_bundle import validate_sweep  # a sweep spec (`sweep run`), not composed into runs

        return "sweep", validate_sweep(path, raw)
    kind = kind or detect_kind(path, raw)
    if kind == "experiment":
        config = cfg.from_dict(_compose_raw(path), str(path))
        validate_deep(config, str(path))
        return kind, config
    return kind, validate_section(kind, preset_fields(kind, raw, str(path)), str(path))


def content_hash(config_dict: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a resolved config (same config, same hash)."""
    body = {k: v for k, v in config_dict.items() if k not in ("schema_version", "content_hash")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def resolved_document(config: cfg.ExperimentConfig) -> dict[str, Any]:
    """A fully resolved experiment as a mapping, led by its schema version and content hash."""
    body = cfg.to_dict(config)
    return {"schema_version": cfg.SCHEMA_VERSION, "content_hash": content_hash(body), **body}


def resolved_yaml(config: cfg.ExperimentConfig) -> str:
    """A self-contained, fully resolved experiment YAML with schema version and content hash."""
    return dump_yaml(resolved_document(config))


FLOW_MAPPING_KEYS = 4  # a mapping of at most this many plain values is written on one line ({mode: min, ...})


class _PresetDumper(yaml.SafeDumper):
    """Short lists and small mappings of plain values on one line, everything else in blocks (PyYAML's own
    `default_flow_style=None` put a 25-key data section on one line, wrapped raggedly over five)."""


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _represent_mapping(dumper: yaml.SafeDumper, data: dict[Any, Any]) -> yaml.Node:
    flow = len(data) <= FLOW_MAPPING_KEYS and all(_plain(v) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=all(_plain(v) for v in data))


_PresetDumper.add_representer(dict, _represent_mapping)
_PresetDumper.add_representer(list, _represent_list)


def dump_yaml(document: dict[str, Any]) -> str:
    """A preset mapping as YAML, in the layout of exported presets (short lists and small mappings of plain
    values on one line, the rest in blocks)."""
    return yaml.dump(document, Dumper=_PresetDumper, sort_keys=False, width=100, allow_unicode=True)


def import_preset(path: Path, *, kind: str | None = None, name: str | None = None, shadow_builtin: bool = False,
                  overwrite: bool = False, notes: list[str] | None = None) -> Path:
    """Validate a preset file and copy it into the user folder; never silently shadows a built-in. A sweep
    brings the presets it bundles along (what was done with each is appended to `notes`)."""
    if name is not None:
        check_name(name)
    if kind is not None:
        check_kind(kind)
    if is_sweep(path, load_mapping(path), kind):
        from engine.sweep_bundle import import_sweep

        return import_sweep(path, name=name, shadow_builtin=shadow_builtin, overwrite=overwrite,
                            notes=notes if notes is not None else [])
    kind, _ = validate_file(path, kind)
    target = import_target(kind, name or plain_file_name(path), shadow_builtin=shadow_builtin, overwrite=overwrite)
    write_preset(target, path.read_bytes())  # the file as it was shared (its comments kept)
    return target


def plain_file_name(path: Path) -> str:
    """A preset file's name as the name it is imported under; a ConfigError asks for --name when it is not plain."""
    try:
        return check_name(path.stem, f"{path}: file name")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; import it with --name NAME") from None


def import_target(kind: str, name: str, *, shadow_builtin: bool, overwrite: bool) -> Path:
    """The user-folder file a preset named `name` is imported to; refused when it would hide a built-in (unless
    `shadow_builtin`), replace a user preset (unless `overwrite`) or lie outside the folder."""
    if (builtin_dir() / kind / f"{name}.yaml").is_file() and not shadow_builtin:
        raise ConfigError(
            f"a built-in {kind} preset is named {name!r}; choose another --name or pass --shadow-builtin"
        )
    target = user_dir() / kind / f"{name}.yaml"
    if target.resolve().parent != (user_dir() / kind).resolve():  # a link or an odd name: never outside the folder
        raise ConfigError(f"--name {name!r}: {target} would be outside the user presets folder {user_dir() / kind}")
    if target.exists() and not overwrite:
        raise ConfigError(f"user preset {target} exists; pass --overwrite to replace it")
    return target


def write_preset(target: Path, content: bytes) -> None:
    """Write a preset file whole or not at all (a temporary file renamed over it)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, target)
