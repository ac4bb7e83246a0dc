"""Comparing runs: which config keys differ, their metrics side by side (sortable, filterable), and diffs.

Also the text every viewer shows for them (the CLI, the console and reports): config values written compactly
(`hflip 0.5, translate 1/8`), the differing keys as one column each, per section or all in one, and `NO_VALUE`
for a value that is not there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, RunError
from engine.runs import RunFolder, RunInfo, is_run_dir, list_runs, read_status, resolve_run

MISSING = "<missing>"  # a key a run's config does not have (JSON output keeps it; people see NO_VALUE)
NO_VALUE = "—"  # how a missing or unset value is shown, everywhere
METRICS = ("best_val_acc", "test_acc", "test_loss", "best_epoch", "epoch", "params", "macs", "wall_s")
# differ between almost all runs (`experiment`: the one a renamed run came from); the row already names the run
NOT_COMPARED = ("name", "experiment", "description")
FRACTION_KEYS = ("fraction", "translate")  # written as 1/8 (how people say RandomAffine's translate)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}; lists stay values (augment.ops is one value)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def run_config(run_dir: Path) -> dict[str, Any]:
    """A run's resolved config, flattened to dotted keys ({} when it has none); `experiment` is the experiment it
    was composed from for every run (a run not renamed is named after it), so a diff never says `— vs X`."""
    from engine.config import to_dict
    from engine.runs import read_config

    if not RunFolder(run_dir).config.is_file():
        return {}
    config = read_config(run_dir)
    plain: dict[str, Any] = {}
    for key, value in to_dict(config).items():
        plain[key] = value
        if key == "name":  # right after the name, as a renamed run's config has it
            plain["experiment"] = config.experiment or config.name
    return flatten(plain)


def diff_configs(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """The dotted keys whose values differ between two flat configs (missing on one side included)."""
    rows = []
    for key in sorted(set(a) | set(b)):
        left, right = a.get(key, MISSING), b.get(key, MISSING)
        if left != right:
            rows.append({"key": key, "a": left, "b": right})
    return rows


def diff_runs(run_a: Path, run_b: Path) -> list[dict[str, Any]]:
    """Config differences of two runs."""
    return diff_configs(run_config(run_a), run_config(run_b))


def config_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Every key of the configs in config order: sections as a config has them (data, model, augment, ...),
    within one the keys as the configs have them (a key only some configs have comes after its section's others)."""
    keys = list(dict.fromkeys(key for config in configs for key in config))
    sections = list(dict.fromkeys(key.split(".", 1)[0] for key in keys))
    return sorted(keys, key=lambda key: sections.index(key.split(".", 1)[0]))


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Keys whose value is not the same in every config (the compare table's columns), in config order."""
    keys = config_keys(configs)
    canonical = [{k: json.dumps(c.get(k, MISSING), sort_keys=True, default=str) for k in keys} for c in configs]
    return [k for k in keys if k not in NOT_COMPARED and len({c[k] for c in canonical}) > 1]


def plural(count: float, word: str, many: str | None = None) -> str:
    """`1 run`, `2 runs`, `1 entry`, `3 entries`, `2 classes`, `1.5 days` (`many` for irregular words)."""
    if many is None and word == "epoch":  # a hard `ch`
        many = "epochs"
    elif many is None and word.endswith("y") and word[-2:-1] not in "aeiou":
        many = word[:-1] + "ies"
    elif many is None:
        many = word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{count:g} {word if count == 1 else many}"


def _number_text(value: float, key: str) -> str:
    """4 significant digits; 1/n for the fraction keys (translate 1/8)."""
    if key.rsplit(".", 1)[-1] in FRACTION_KEYS and 0 < value <= 0.5:
        denominator = round(1 / value)
        if abs(1 / denominator - value) < 1e-9:
            return f"1/{denominator}"
    return f"{value:.4g}"


def op_text(op: dict[str, Any]) -> str:
    """One augmentation op: `hflip 0.5`, `translate 1/8`, `affine degrees=10 translate=1/8 p=0.8`, `choice(...)`."""
    args = {k: v for k, v in op.items() if k not in ("op", "p", "ops")}
    text = str(op.get("op", "?"))
    if isinstance(op.get("ops"), list):
        text += f"({compact_value(op['ops'])})"
    if len(args) == 1 and "ops" not in op:
        ((key, value),) = args.items()
        text += f" {compact_value(value, key)}"
    elif args:
        text += " " + " ".join(f"{k}={compact_value(v, k)}" for k, v in args.items())
    p = op.get("p", 1.0)
    if isinstance(p, (int, float)) and p != 1:
        text += f" p={p:g}" if args or "ops" in op else f" {p:g}"
    return text


def compact_value(value: Any, key: str = "") -> str:
    """A config value for people: YAML words, short numbers, op lists as `hflip 0.5, translate 1/8`, no JSON."""
    if value is None or (isinstance(value, str) and value == MISSING):
        return NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number_text(value, key) if isinstance(value, float) else str(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return "none"
        if all(isinstance(v, dict) and "op" in v for v in value):
            return ", ".join(op_text(v) for v in value)
        if key == "schedule.extend" and all(isinstance(v, dict) for v in value):  # extension segments
            return " + ".join(f"{v.get('name')} {plural(v.get('epochs', 0), 'epoch')}" for v in value)
        return "[" + ",".join(compact_value(v, key) for v in value) + "]"
    if isinstance(value, dict):
        return " ".join(f"{k}={compact_value(v, k)}" for k, v in value.items()) or "none"
    return str(value)


def key_labels(keys: Sequence[str]) -> dict[str, str]:
    """Column names: the dotted key without the `options.` level (model.hidden), unless that would clash."""
    short = {key: key.replace(".options.", ".", 1) for key in keys}
    taken = list(short.values())
    return {key: label if taken.count(label) == 1 else key for key, label in short.items()}


def _pairs(config: dict[str, Any], keys: Sequence[str], labels: dict[str, str], joiner: str) -> str:
    """`label=value; ...` of the keys a config has (keys of another architecture are left out)."""
    present = [f"{labels[k]}={compact_value(config[k], k)}" for k in keys if config.get(k, MISSING) != MISSING]
    return joiner.join(present) or NO_VALUE


def config_columns(configs: Sequence[dict[str, Any]], keys: Sequence[str], grouping: str = "key",
                   joiner: str = "; ") -> list[tuple[str, list[str]]]:
    """(header, one text per config) for the keys: one column per key, per config section (a section with one
    differing key keeps its own column), or one `settings` column in all (grouping "key", "section", "one");
    grouped settings are `label=value` joined by `joiner`."""
    labels = key_labels(keys)
    if grouping == "one":
        return [("settings", [_pairs(c, keys, labels, joiner) for c in configs])] if keys else []
    if grouping == "key":
        return [(labels[k], [compact_value(c.get(k, MISSING), k) for c in configs]) for k in keys]
    sections: dict[str, list[str]] = {}
    for key in keys:
        sections.setdefault(key.split(".", 1)[0], []).append(key)
    columns = []
    for section, members in sections.items():
        if len(members) == 1:
            columns += config_columns(configs, members, "key")
            continue
        inner = {k: labels[k].split(".", 1)[-1] for k in members}
        columns.append((section, [_pairs(c, members, inner, joiner) for c in configs]))
    return columns


def model_presets() -> list[tuple[str, dict[str, Any]]]:
    """(name, flat resolved section) of every model preset (user ones first); broken ones left out."""
    from engine.config import section_from_dict, to_dict
    from engine.errors import EngineError
    from engine.presets import list_presets, load_section_preset

    found = []
    for info in sorted(list_presets("model"), key=lambda info: not info.origin.startswith("user")):
        try:
            section = section_from_dict("model", load_section_preset("model", str(info.path)), str(info.path))
        except (EngineError, OSError):
            continue
        found.append((info.name, flatten(to_dict(section))))
    return found


def model_preset_label(run_dir: Path, presets: list[tuple[str, dict[str, Any]]]) -> str | None:
    """The model preset a run used: its name when the run's model section is that preset's, `name*` when it is
    the nearest preset of its architecture with changed values; None when no preset fits (or no config)."""
    from engine.config import section_from_dict
    from engine.errors import EngineError
    from engine.presets import load_mapping

    try:
        model = load_mapping(RunFolder(run_dir).config).get("model")
        if not isinstance(model, dict):
            return None
        # through the schema, so an older run's config gets the defaults of fields added since
        return model_section_label(section_from_dict("model", model, "config.yaml"), presets)
    except (EngineError, OSError):
        return None


def model_section_label(model: Any, presets: list[tuple[str, dict[str, Any]]] | None = None) -> str | None:
    """The model preset a model section is (`name`), or is nearest to with values changed (`name*`), among
    `presets` (all of them when not given); None when no preset has its architecture. Recorded in a run's
    status as `model_preset` when it starts, so listings need not load every preset (and torch) to name it."""
    from engine.config import to_dict

    presets = model_presets() if presets is None else presets
    flat = flatten(to_dict(model))
    canonical = _canonical(flat)
    same_kind = [(name, preset) for name, preset in presets if preset.get("name") == flat.get("name")]
    for name, preset in same_kind:
        if _canonical(preset) == canonical:
            return name
    if not same_kind:
        return None
    nearest = min(same_kind, key=lambda item: len(diff_configs(item[1], flat)))
    return f"{nearest[0]}*"


# What a run does with a model, not what model it is: starting weights and an initial frozen backbone.
_NOT_THE_MODEL = ("pretrained", "freeze_backbone_epochs")


def _canonical(flat: dict[str, Any]) -> str:
    """The model section as compared with the presets (starting weights and freezing left out)."""
    return json.dumps({k: v for k, v in flat.items() if k not in _NOT_THE_MODEL}, sort_keys=True, default=str)


def run_metrics(run_dir: Path) -> dict[str, Any]:
    """The metrics compared: best/test values from status.json and the final epoch's losses."""
    status = read_status(run_dir)
    metrics = {key: status.get(key) for key in METRICS}
    metrics.update({f"final_{k}": v for k, v in (status.get("final") or {}).items()})
    return {"state": status.get("state", "unknown"), **metrics}


def _sort_value(row: dict[str, Any], key: str) -> Any:
    value = row["metrics"].get(key, row["config"].get(key))
    return None if value == MISSING else value


def _sortable(value: Any) -> tuple[int, Any]:
    """Numbers order numerically, anything else by its JSON text; numbers first."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, json.dumps(value, sort_keys=True, default=str))


def sort_rows(rows: list[dict[str, Any]], key: str, *, descending: bool = False) -> list[dict[str, Any]]:
    """Rows ordered by `name`, a metric or a config key; runs without a value always come last."""
    if key == "name":
        return sorted(rows, key=lambda r: r["name"], reverse=descending)
    known = {"state", *METRICS} | {k for r in rows for k in (*r["metrics"], *r["config"])}
    if key not in known:
        raise ConfigError(f"--sort {key}: not a metric or a differing config key; metrics: "
                          f"{', '.join(('name', 'state', *METRICS))}")
    present = [r for r in rows if _sort_value(r, key) is not None]
    absent = [r for r in rows if _sort_value(r, key) is None]
    present.sort(key=lambda r: _sortable(_sort_value(r, key)), reverse=descending)
    return present + absent


def compare_runs(run_dirs: list[Path], *, sort: str | None = None, descending: bool = False,
                 all_keys: bool = False) -> dict[str, Any]:
    """The keys that differ between the runs (every key with `all_keys`), and per run its values of those keys
    and its metrics."""
    configs = [run_config(d) for d in run_dirs]
    keys = config_keys(configs) if all_keys else differing_keys(configs)
    rows = [{"name": d.name, "path": str(d), "config": {k: c.get(k, MISSING) for k in keys},
             "metrics": run_metrics(d)} for d, c in zip(run_dirs, configs)]
    if sort:
        rows = sort_rows(rows, sort, descending=descending)
    return {"keys": keys, "metrics": ["state", *METRICS], "rows": rows}


def filter_runs(runs: list[RunInfo], *, state: str | None = None, data: str | None = None,
                model: str | None = None) -> list[RunInfo]:
    """Runs in a state, on a data source, with a model (each filter optional; data/model match prefixes; a model
    by its architecture or by the preset the run started from)."""
    return [r for r in runs if (state is None or r.state == state) and (data is None or r.data.startswith(data))
            and (model is None or r.model.startswith(model) or r.model_label.startswith(model))]


def group_match(root: Path, name: str) -> Path | None:
    """A k-fold group folder named by path, exact name, short name (`X-kfold`: its newest group) or unique prefix;
    None when nothing matches, or when `name` names a run exactly (a run's name is never taken by its groups)."""
    from engine.kfold import RECORD, list_groups
    from engine.runs import list_runs, newest_named, short_name

    direct = Path(name).expanduser()
    if direct.is_dir() and (direct / RECORD).is_file():
        return direct
    groups = list_groups(root)  # oldest name first: the stamp orders them
    exact = [g for g in groups if g.name == name]
    named = [g for g in groups if short_name(g.name) == name]
    if exact or named:
        return exact[0] if exact else newest_named(named, name, "k-fold groups")
    all_runs = list_runs(root)
    if any(name in (r.name, Path(r.name).name, short_name(r.name)) for r in all_runs):
        return None
    matches = [g for g in groups if g.name.startswith(name)]
    if len(matches) > 1:
        raise RunError(f"{name!r} matches several k-fold groups: {', '.join(g.name for g in matches[:8])}")
    if matches:
        inside = matches[0].name + "/"
        runs = [r.name for r in all_runs if r.name.startswith(name) and not r.name.startswith(inside)]
        if runs:
            raise RunError(f"{name!r} matches the k-fold group {matches[0].name} and the run {runs[0]}"
                           f"{' (and more)' if len(runs) > 1 else ''}; give more of the name")
    return matches[0] if matches else None


def group_members(group: Path) -> list[Path]:
    """The run folders of a k-fold group, fold order."""
    return sorted(p for p in group.iterdir() if is_run_dir(p))


def expand_targets(root: Path, names: list[str]) -> list[Path]:
    """Run folders named by run names/prefixes/folders or k-fold groups (expanded to their folds), no repeats."""
    found: list[Path] = []
    for name in names:
        group = group_match(root, name)
        paths = group_members(group) if group is not None else [resolve_run(root, name)]
        found.extend(p for p in paths if p.resolve() not in {f.resolve() for f in found})
    return found


def select_runs(root: Path, names: list[str], *, state: str | None = None, data: str | None = None,
                model: str | None = None) -> list[Path]:
    """The runs named (all runs when none named), filtered by state / data / model."""
    if names:
        chosen = expand_targets(root, names)
        statuses = [(p, read_status(p)) for p in chosen]
        infos = [RunInfo(p.name, p, s, str(s.get("data", "")), str(s.get("model", ""))) for p, s in statuses]
    else:
        infos = list_runs(root)
    return [r.path for r in filter_runs(infos, state=state, data=data, model=model)]
