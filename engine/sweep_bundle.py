"""Sharing a sweep: one file holding its spec and every preset it names, and importing such a file.

`presets export SWEEP` writes the spec as it is, plus a `bundle:` mapping: its base experiment fully resolved (with
the export's `--set` overrides) and the section presets its whole-preset choices name (`schedule: [cosine,
plateau]`), each with every field. `presets import FILE` checks the spec with the bundled presets standing in for
the receiver's (as `sweep run` checks it) before anything is written; then each bundled preset is used as is where
the receiver has an identical one of its name, imported under its name where there is none, and imported as
`<sweep>-<name>` (the spec's reference renamed) where the receiver's differs: nothing of theirs is replaced. A spec
without a bundle is checked and copied as it is.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import config as cfg
from engine.errors import ConfigError, did_you_mean
from engine.presets import (
    builtin_dir, check_name, content_hash, dump_yaml, find_preset, import_target, load_mapping, load_section_preset,
    plain_file_name, preset_fields, presets_overlay, resolve_experiment, resolved_document, user_dir, validate_deep,
    validate_section, write_preset,
)

BUNDLE_KEY = "bundle"
BUNDLE_SCHEMA = 1
SECTION_KINDS = tuple(kind for kind in cfg.PRESET_KINDS if kind != "experiment")
HEADER = """\
# A sweep shared with the presets it names (under `bundle:`; its base experiment fully resolved).
# Receive it:  imgcls-console presets import {file}
# then run it: imgcls-console sweep run {name}
"""


@dataclass(frozen=True)
class Bundled:
    """One preset carried by a shared sweep, checked; `fingerprint` is the content hash of its resolved fields."""

    kind: str
    name: str
    body: dict[str, Any]
    fingerprint: str


# ---------------------------------------------------------------------------------------------- reading a spec


def preset_refs(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of every preset a spec names: its base experiment, then each whole-preset choice."""
    refs = [("experiment", raw["base"])] if isinstance(raw.get("base"), str) else []
    params = raw.get("params")
    for key, value in params.items() if isinstance(params, dict) else ():
        kind = _preset_kind(str(key))
        for choice in _choices(value) if kind else []:
            if isinstance(choice, str) and (kind, choice) not in refs:
                refs.append((kind, choice))
    return refs


def _preset_kind(key: str) -> str | None:
    """The section kind whose whole presets a parameter chooses (`schedule` or `schedule.preset`), else None."""
    head, _, tail = key.partition(".")
    return head if head in SECTION_KINDS and tail in ("", "preset") else None


def _choices(value: Any) -> list[Any]:
    """A parameter's list of choices (`[a, b]` or `{choices: [a, b]}`); none for a range."""
    if isinstance(value, dict):
        value = value.get("choices")
    return value if isinstance(value, list) else []


def validate_sweep(path: Path, raw: dict[str, Any], overrides: list[str] | None = None) -> Any:
    """A sweep spec file checked as `sweep run` checks it (engine.sweep.SweepSpec); the presets it bundles, if
    any, are checked first and stand in for the receiver's of their names."""
    from engine.sweep import spec_from_raw

    raw = dict(raw)
    if BUNDLE_KEY not in raw:
        return spec_from_raw(raw, str(path), path.stem, list(overrides or []))
    bundled = read_bundle(path, raw.pop(BUNDLE_KEY))
    with tempfile.TemporaryDirectory(prefix="imgcls-bundle-") as folder:
        _stage(Path(folder), [(item, item.name) for item in bundled])
        with presets_overlay(Path(folder)):
            return spec_from_raw(raw, str(path), path.stem, list(overrides or []))


def spec_document(spec: Any) -> dict[str, Any]:
    """A sweep spec with its defaults written out (metric, direction, trials, sampler, pruner, seed)."""
    from engine.sweep import SPEC_KEYS

    document = {key: value for key, value in spec.raw.items() if key != BUNDLE_KEY}
    for key in ("metric", "direction", "trials", "sampler", "pruner", "seed"):
        document.setdefault(key, getattr(spec, key))
    return {key: document[key] for key in SPEC_KEYS if key in document}


# ---------------------------------------------------------------------------------------------- export


def export_sweep(name: str, overrides: list[str] | None = None, file_name: str | None = None) -> str:
    """The shareable text of a sweep preset (name or file): its spec as written plus the bundle of the presets it
    names, its base experiment resolved with `overrides`. The spec is checked first; `file_name` (what it is
    written to, which names the sweep where it is imported) goes in the header."""
    path = find_preset("sweep", name)
    raw = load_mapping(path)
    if BUNDLE_KEY in raw:
        raise ConfigError(f"{path}: already a shared sweep with its `{BUNDLE_KEY}:`; share the file as it is")
    validate_sweep(path, raw, overrides)
    bundle: dict[str, Any] = {"schema_version": BUNDLE_SCHEMA}
    for kind, preset in preset_refs(raw):
        if kind == "experiment":
            body = resolved_document(resolve_experiment(preset, overrides or []))
        else:
            body = _section_document(kind, preset)
        bundle.setdefault(kind, {})[preset] = body
    file_name = file_name or f"{path.stem}.yaml"
    header = HEADER.format(file=file_name, name=Path(file_name).stem)
    return header + dump_yaml({**raw, BUNDLE_KEY: bundle})


def _section_document(kind: str, name: str) -> dict[str, Any]:
    """A section preset with every field (and its description, if it has one)."""
    description = load_mapping(find_preset(kind, name)).get("description")
    fields = cfg.to_dict(cfg.section_from_dict(kind, load_section_preset(kind, name)))
    return {"description": description, **fields} if isinstance(description, str) and description else fields


# ---------------------------------------------------------------------------------------------- the bundle


def read_bundle(path: Path, value: Any) -> list[Bundled]:
    """The presets of a `bundle:` mapping, each checked; an error names the file and the dotted key."""
    where = f"{path}: {BUNDLE_KEY}"
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of preset kinds to presets (as `presets export` writes it)")
    schema = value.get("schema_version", BUNDLE_SCHEMA)
    if schema != BUNDLE_SCHEMA:
        raise ConfigError(f"{where}.schema_version: {schema!r}; this version reads bundles of schema {BUNDLE_SCHEMA}")
    items = []
    for kind, presets in value.items():
        if kind == "schema_version":
            continue
        if kind not in cfg.PRESET_KINDS:
            raise ConfigError(f"{where}.{kind}: not a preset kind{did_you_mean(str(kind), cfg.PRESET_KINDS)}; a "
                              f"bundle holds {', '.join(cfg.PRESET_KINDS)}")
        if not isinstance(presets, dict):
            raise ConfigError(f"{where}.{kind}: expected a mapping of preset names to their fields")
        for name, body in presets.items():
            check_name(str(name), f"{where}.{kind}: preset name")
            if not isinstance(body, dict):
                raise ConfigError(f"{where}.{kind}.{name}: expected a mapping of fields, got {body!r}")
            items.append(_checked(path, kind, str(name), body))
    return items


def _checked(path: Path, kind: str, name: str, body: dict[str, Any]) -> Bundled:
    """One bundled preset validated as a preset file of its kind; problems are keyed `bundle.<kind>.<name>.…`."""
    source = f"{path}: {BUNDLE_KEY}.{kind}.{name}"
    try:
        if kind == "experiment":
            config = cfg.from_dict(body, source)
            validate_deep(config, source)
            fields = cfg.to_dict(config)
        else:
            fields = cfg.to_dict(validate_section(kind, preset_fields(kind, body, source), source))
    except ConfigError as exc:
        problems = [_dotted(problem, source, kind) for problem in cfg.problems_of(exc)]
        cfg.raise_problems(problems, str(path))
        raise  # not reached: raise_problems raised
    return Bundled(kind, name, body, content_hash(fields))


def _dotted(problem: str, source: str, kind: str) -> str:
    """`file: bundle.optim.x: optim.lr: …` as `file: bundle.optim.x.lr: …` (one dotted key)."""
    if not problem.startswith(f"{source}: "):
        return problem
    rest = problem[len(source) + 2:]
    return f"{source}.{rest.removeprefix(f'{kind}.') if kind != 'experiment' else rest}"


def _stage(folder: Path, placed: list[tuple[Bundled, str]]) -> None:
    """Write bundled presets as preset files `folder/<kind>/<name>.yaml` (for an overlay, or to import)."""
    for item, name in placed:
        write_preset(folder / item.kind / f"{name}.yaml", dump_yaml(item.body).encode())


def _fingerprint(kind: str, name: str) -> str | None:
    """The content hash of the receiver's preset `name` of `kind` resolved; None when there is none, "(invalid)"
    when it does not load (it then differs from any bundled preset)."""
    if not any((root / kind / f"{name}.yaml").is_file() for root in (user_dir(), builtin_dir())):
        return None
    try:
        if kind == "experiment":
            return content_hash(cfg.to_dict(resolve_experiment(name)))
        return content_hash(cfg.to_dict(cfg.section_from_dict(kind, load_section_preset(kind, name))))
    except ConfigError:
        return "(invalid)"


# ---------------------------------------------------------------------------------------------- import


def import_sweep(path: Path, *, name: str | None, shadow_builtin: bool, overwrite: bool,
                 notes: list[str]) -> Path:
    """Check a sweep file (with the presets it bundles) and import it into the user folder's `sweep/`; each
    bundled preset is kept, imported or imported renamed (see the module doc), and said in `notes`."""
    from engine.sweep import spec_from_raw

    raw = load_mapping(path)
    sweep = name or plain_file_name(path)
    target = import_target("sweep", sweep, shadow_builtin=shadow_builtin, overwrite=overwrite)
    if BUNDLE_KEY not in raw:
        spec_from_raw(raw, str(path), sweep, [])
        write_preset(target, path.read_bytes())  # the file as it was shared (its comments kept)
        return target
    spec = dict(raw)
    bundled = read_bundle(path, spec.pop(BUNDLE_KEY))
    placed = [(item, _place(path, item, sweep, overwrite)) for item in bundled]
    spec = _renamed(spec, {(item.kind, item.name): new for item, (new, _) in placed})
    to_write = [(item, new) for item, (new, action) in placed if action != "same"]
    with tempfile.TemporaryDirectory(prefix="imgcls-bundle-") as folder:
        _stage(Path(folder), to_write)
        with presets_overlay(Path(folder)):
            spec_from_raw(spec, str(path), sweep, [])  # as the receiver will have it: nothing written before
    _stage(user_dir(), to_write)
    write_preset(target, (f"# imported from {path.name}\n" + dump_yaml(spec)).encode())
    notes += [_note(item, new, action) for item, (new, action) in placed]
    return target


def _place(path: Path, item: Bundled, sweep: str, overwrite: bool) -> tuple[str, str]:
    """(name, action) for a bundled preset: `same` (the receiver's is identical), `new` (none of that name),
    `renamed` (theirs differs: `<sweep>-<name>`, replaced there only with `overwrite`)."""
    found = _fingerprint(item.kind, item.name)
    if found == item.fingerprint:
        return item.name, "same"
    if found is None:
        return item.name, "new"
    other = check_name(f"{sweep}-{item.name}", f"{path}: {BUNDLE_KEY}.{item.kind}.{item.name}: the name")
    found = _fingerprint(item.kind, other)
    if found == item.fingerprint:
        return other, "same"
    if found is not None and not overwrite:
        raise ConfigError(f"{path}: {BUNDLE_KEY}.{item.kind}.{item.name}: differs from your {item.kind} preset "
                          f"{item.name!r}, and {other!r} (where it would go) differs too; pass --overwrite to "
                          f"replace {other!r}")
    return other, "renamed"


def _renamed(spec: dict[str, Any], names: dict[tuple[str, str], str]) -> dict[str, Any]:
    """The spec with its preset references (base, whole-preset choices) changed to the names they are imported
    under."""
    spec = copy.deepcopy(spec)
    if isinstance(spec.get("base"), str):
        spec["base"] = names.get(("experiment", spec["base"]), spec["base"])
    params = spec.get("params")
    for key, value in params.items() if isinstance(params, dict) else ():
        kind = _preset_kind(str(key))
        if kind is None:
            continue
        choices = _choices(value)  # the list inside the copy: renamed in place
        for index, choice in enumerate(choices):
            if isinstance(choice, str):
                choices[index] = names.get((kind, choice), choice)
    return spec


def _note(item: Bundled, new: str, action: str) -> str:
    """What importing did with one bundled preset, for the person who imports."""
    if action == "same" and new == item.name:
        return f"{item.kind} preset {item.name}: the same as yours, nothing copied"
    if action == "same":
        return f"{item.kind} preset {item.name}: the same as your {new}, which the sweep uses"
    if action == "new":
        return f"{item.kind} preset {item.name}: imported ({user_dir() / item.kind / f'{new}.yaml'})"
    return (f"{item.kind} preset {item.name}: differs from yours, imported as {new} "
            f"({user_dir() / item.kind / f'{new}.yaml'}); the sweep uses that")
