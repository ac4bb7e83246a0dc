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
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from engine import config as cfg
from engine.errors import ConfigError, did_you_mean

log = logging.getLogger(__name__)

EXPERIMENT_KEYS = {"name", "experiment", "description", "base", *cfg.SECTION_TYPES}


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


MAX_PRESET_BYTES = 1 << 20   # a preset is a few hundred bytes; a shared file larger than this is refused unread
MAX_DEPTH = 40               # nesting levels of a preset (a config is 4 deep; augmentation choices a few more)
MAX_NODES = 100_000          # values in a preset once YAML aliases are expanded (an alias bomb is millions)
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # a preset name: a file name, never a path


class _Refused(yaml.YAMLError):
    """A document outside the bounds of a preset (too deep, too large once aliases expand, odd keys)."""


class _StrictSafeLoader(yaml.SafeLoader):
    """The safe loader, bounded: nesting depth and alias expansion are limited before anything is constructed;
    a key given twice in one mapping (YAML would silently keep the last) and a key that is not a plain value
    are refused."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"line {mark.line + 1}: nested more than {MAX_DEPTH} levels deep; a preset is "
                               "a few levels of plain values")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused(f"line {key_node.start_mark.line + 1}: a mapping key must be a plain name, not a "
                               f"{'list' if isinstance(key_node, yaml.SequenceNode) else 'mapping'}")
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand past MAX_NODES values or MAX_DEPTH levels (an alias bomb: a few
    hundred bytes naming a list of lists of ... billions of values), or that refers to itself. Each distinct
    node is visited once, without recursion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            open_nodes.discard(key)
            if size[key] > MAX_NODES:
                raise _Refused(f"line {node.start_mark.line + 1}: expands to more than {MAX_NODES} values (YAML "
                               "aliases repeating aliases?); a preset is refused past that")
            if depth[key] > MAX_DEPTH:
                raise _Refused(f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep once its "
                               "aliases are expanded")
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise _Refused(f"line {node.start_mark.line + 1}: an alias refers to the value that contains it")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def preset_text(path: Path) -> str:
    """The text of a preset file: at most MAX_PRESET_BYTES of UTF-8 (a BOM allowed); anything else is a
    ConfigError naming the file."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_PRESET_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_PRESET_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_PRESET_BYTES // 1024} KiB; a preset is a short YAML file, so "
                          "this one is refused unread")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{path}: UTF-16 text; save the preset as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); save the preset as "
                          "UTF-8") from None


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a bounded SafeLoader subclass


def load_yaml(path: Path) -> Any:
    """Parse a YAML file with the bounded safe loader; any error names the file. Nothing in it is executed."""
    text = preset_text(Path(path))
    try:
        return _parse_yaml(text)
    except _Refused as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a preset") from None
    except yaml.constructor.ConstructorError as exc:
        if exc.problem and "appears twice" in exc.problem:
            raise ConfigError(f"{path}: {exc.problem}") from exc
        raise ConfigError(
            f"{path}: refused YAML tag ({exc.problem}); presets are plain data, tags such as !!python/... are not allowed"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(exc)}") from exc


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def load_mapping(path: Path) -> dict[str, Any]:
    """Load a YAML file that must hold a mapping (an empty file is an empty mapping)."""
    raw = load_yaml(path)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(raw).__name__}")
    return raw


def list_presets(kind: str | None = None) -> list[PresetInfo]:
    """Every preset on the search path (user presets first; a user preset hides a built-in one of its name)."""
    kinds = [kind] if kind else list(cfg.PRESET_KINDS)
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
    return sorted(found.values(), key=lambda p: (cfg.PRESET_KINDS.index(p.kind), p.name))


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


def find_preset(kind: str, name: str) -> Path:
    """Resolve a preset name (or file path) of `kind` to a file; a missing one lists the available names."""
    if kind not in cfg.PRESET_KINDS:
        raise ConfigError(f"unknown preset kind {kind!r}; kinds are {', '.join(cfg.PRESET_KINDS)}")
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if path.is_file():
            return path
        raise ConfigError(f"preset file {name} does not exist")
    for root in (user_dir(), builtin_dir()):
        path = root / kind / f"{name}.yaml"
        if path.is_file():
            if root != builtin_dir() and (builtin_dir() / kind / f"{name}.yaml").is_file():
                _note_shadowing(kind, name, path)
            return path
    names = [p.name for p in list_presets(kind)]
    raise ConfigError(
        f"no {kind} preset named {name!r}{did_you_mean(name, names)}; available: {', '.join(names) or '(none)'}"
    )


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


def load_section_preset(kind: str, name: str, named_in: str | None = None) -> dict[str, Any]:
    """Load and validate one section preset; errors name its file and dotted key (and where it was named)."""
    try:
        path = find_preset(kind, name)
    except ConfigError as exc:
        if named_in is None:
            raise
        raise ConfigError(f"{named_in}: {exc}") from exc
    raw = load_mapping(path)
    raw.pop("description", None)
    _check_section(kind, cfg.section_from_dict(kind, raw, str(path)), str(path))
    return raw


def _check_section(kind: str, section: Any, source: str) -> None:
    """The checks owned by other modules for one section (augmentation ops, model options), naming `source`."""
    if kind == "augment":
        from engine.augment import check_ops

        check_ops(section.ops, source)
    elif kind == "model":
        from engine.models import check_model_config

        check_model_config(section, source)


def _resolve_section(kind: str, value: Any, source: str) -> dict[str, Any]:
    """An experiment's section: a preset name, {preset: name, ...overrides} or plain fields."""
    if isinstance(value, str):
        if kind not in cfg.PRESET_KINDS:
            raise ConfigError(f"{source}: {kind}: expected a mapping of fields ({kind} has no presets)")
        return load_section_preset(kind, value, f"{source}: {kind}")
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
    return _deep_merge(load_section_preset(kind, preset, f"{source}: {kind}.preset"), value)


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
            base_path = find_preset("experiment", base)
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
                section = _resolve_section(key, value, str(path))
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
        value = _parse_yaml(value_text) if value_text.strip() else ""
    except RecursionError:
        raise ConfigError(f"--set {text}: value nested too deeply") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text}: value is not valid YAML ({_one_line(exc)})") from None
    return keys, value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--set` overrides to a composed raw dict; each is validated, errors name the override."""
    result = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] in cfg.PRESET_KINDS and keys[-1:] in (["preset"], [keys[0]]) and len(keys) <= 2:
            if not isinstance(value, str):  # `--set model=small-cnn` or `--set model.preset=small-cnn`
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
    validate_deep(config, str(path))
    return config


def validate_deep(config: cfg.ExperimentConfig, source: str | None) -> None:
    """Checks owned by other modules: augmentation ops, model options, optimizer and schedule ranges (these
    import torch), so `presets validate` refuses what a run would refuse; each failed check is listed."""
    cfg.raise_problems(_deep_problems(config, source), source)


def _deep_problems(config: cfg.ExperimentConfig, source: str | None) -> list[str]:
    """The first problem of each deep check (ops, model, optimizer, schedule), each naming file and key."""
    from engine.augment import check_ops
    from engine.models import check_model_config
    from engine.optim import check_optim_config, check_schedule_config

    file = f"{source}: " if source else ""
    checks = [  # (check, prefix): the optimizer's checks name the key only, so the file is added
        (lambda: check_ops(config.augment.ops, source), ""),
        (lambda: check_model_config(config.model, source), ""),
        (lambda: check_optim_config(config.optim), file),
        (lambda: check_schedule_config(config.schedule, epochs=config.train.epochs, steps_per_epoch=1,
                                       base_lr=config.optim.lr), file),
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
    """`kind` when it is a preset kind; else a ConfigError listing them."""
    if kind not in cfg.PRESET_KINDS:
        raise ConfigError(f"--kind {kind!r}: not a preset kind; kinds are {', '.join(cfg.PRESET_KINDS)}"
                          f"{did_you_mean(str(kind), cfg.PRESET_KINDS)}")
    return kind


def check_name(name: str, what: str = "--name") -> str:
    """`name` when it is a plain preset name (letters, digits, `.`, `_`, `-`; no folder, no leading dot), else a
    ConfigError: a name never reaches outside the presets folder."""
    if not PLAIN_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"{what} {name!r}: not a plain preset name (letters, digits, '.', '_' and '-', starting "
                          "with a letter or digit, at most 100 characters; no folders)")
    return name


def validate_file(path: Path, kind: str | None = None) -> tuple[str, Any]:
    """Validate a preset file of any kind (a sweep spec too); returns (kind, validated object)."""
    if kind is not None and kind != "sweep":
        check_kind(kind)
    raw = load_mapping(path)
    if kind == "sweep" or (kind is None and (path.parent.name == "sweep" or {"params", "base"} <= set(raw))):
        from engine.sweep import spec_from_raw  # a sweep spec (`sweep run`), not a preset composed into runs

        return "sweep", spec_from_raw(raw, str(path), path.stem, [])
    kind = kind or detect_kind(path, raw)
    if kind == "experiment":
        config = cfg.from_dict(_compose_raw(path), str(path))
        validate_deep(config, str(path))
        return kind, config
    raw.pop("description", None)
    section = cfg.section_from_dict(kind, raw, str(path))
    _check_section(kind, section, str(path))
    return kind, section


def content_hash(config_dict: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a resolved config (same config, same hash)."""
    body = {k: v for k, v in config_dict.items() if k not in ("schema_version", "content_hash")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def resolved_yaml(config: cfg.ExperimentConfig) -> str:
    """A self-contained, fully resolved experiment YAML with schema version and content hash."""
    body = cfg.to_dict(config)
    document = {"schema_version": cfg.SCHEMA_VERSION, "content_hash": content_hash(body), **body}
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)


def import_preset(path: Path, *, kind: str | None = None, name: str | None = None,
                  shadow_builtin: bool = False, overwrite: bool = False) -> Path:
    """Validate a preset file and copy it into the user folder; never silently shadows a built-in."""
    if name is not None:
        check_name(name)
    kind, _ = validate_file(path, kind)
    if name is None:
        try:
            name = check_name(path.stem, f"{path}: file name")
        except ConfigError as exc:
            raise ConfigError(f"{exc}; import it with --name NAME") from None
    if (builtin_dir() / kind / f"{name}.yaml").is_file() and not shadow_builtin:
        raise ConfigError(
            f"a built-in {kind} preset is named {name!r}; choose another --name or pass --shadow-builtin"
        )
    target = user_dir() / kind / f"{name}.yaml"
    if target.resolve().parent != (user_dir() / kind).resolve():  # a link or an odd name: never outside the folder
        raise ConfigError(f"--name {name!r}: {target} would be outside the user presets folder {user_dir() / kind}")
    if target.exists() and not overwrite:
        raise ConfigError(f"user preset {target} exists; pass --overwrite to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".yaml.tmp")
    shutil.copyfile(path, tmp)
    os.replace(tmp, target)
    return target
