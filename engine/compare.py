"""Comparing runs: which config keys differ, their metrics side by side (sortable, filterable), and diffs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, RunError
from engine.runs import RunFolder, RunInfo, is_run_dir, list_runs, read_status, resolve_run

MISSING = "<missing>"
METRICS = ("best_val_acc", "test_acc", "test_loss", "best_epoch", "epoch", "params", "macs", "wall_s")
NOT_COMPARED = ("name", "description")  # differ between almost all runs; the row already names the run


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
    """A run's resolved config, flattened to dotted keys ({} when it has none)."""
    from engine.config import to_dict
    from engine.runs import read_config

    if not RunFolder(run_dir).config.is_file():
        return {}
    return flatten(to_dict(read_config(run_dir)))


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


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Keys whose value is not the same in every config (the compare table's columns)."""
    keys = sorted(set().union(*configs)) if configs else []
    canonical = [{k: json.dumps(c.get(k, MISSING), sort_keys=True, default=str) for k in keys} for c in configs]
    return [k for k in keys if k not in NOT_COMPARED and len({c[k] for c in canonical}) > 1]


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


def compare_runs(run_dirs: list[Path], *, sort: str | None = None, descending: bool = False) -> dict[str, Any]:
    """The keys that differ between the runs, and per run its values of those keys and its metrics."""
    configs = [run_config(d) for d in run_dirs]
    keys = differing_keys(configs)
    rows = [{"name": d.name, "path": str(d), "config": {k: c.get(k, MISSING) for k in keys},
             "metrics": run_metrics(d)} for d, c in zip(run_dirs, configs)]
    if sort:
        rows = sort_rows(rows, sort, descending=descending)
    return {"keys": keys, "metrics": ["state", *METRICS], "rows": rows}


def filter_runs(runs: list[RunInfo], *, state: str | None = None, data: str | None = None,
                model: str | None = None) -> list[RunInfo]:
    """Runs in a state, on a data source, with a model (each filter optional; data/model match prefixes)."""
    return [r for r in runs if (state is None or r.state == state)
            and (data is None or r.data.startswith(data)) and (model is None or r.model.startswith(model))]


def group_match(root: Path, name: str) -> Path | None:
    """A k-fold group folder named by path, exact name or unique prefix; None when nothing matches."""
    from engine.kfold import RECORD, list_groups

    direct = Path(name).expanduser()
    if direct.is_dir() and (direct / RECORD).is_file():
        return direct
    groups = list_groups(root)
    exact = [g for g in groups if g.name == name]
    matches = exact or [g for g in groups if g.name.startswith(name)]
    if len(matches) > 1:
        raise RunError(f"{name!r} matches several k-fold groups: {', '.join(g.name for g in matches[:8])}")
    if matches and not exact:
        from engine.runs import list_runs

        inside = matches[0].name + "/"
        runs = [r.name for r in list_runs(root) if r.name.startswith(name) and not r.name.startswith(inside)]
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
