"""A sweep's report: the ranked trials, parameter importances, a figure of each parameter against the metric with
the best so far, and the best trial's training curves (engine.report's section), as Markdown with PNG figures."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from engine.errors import EngineError
from engine.report import _cell, _pct, curves_section, environment_section, table
from engine.runs import atomic_write_text, safe_name
from engine.sweep import SweepSpec, shown_value, summary


def _metric_text(metric: str, value: Any) -> str:
    return _pct(value) if metric.endswith("acc") else _cell(value)


def _figure_points(study: Any, spec: SweepSpec) -> tuple[dict[str, list[tuple[Any, float, str]]], list[float]]:
    """Per parameter: (value, metric, state) of each complete or pruned trial; the metric per trial number (NaN
    where a trial has none)."""
    points: dict[str, list[tuple[Any, float, str]]] = {p.key: [] for p in spec.params}
    order = []
    for trial in study.trials:
        value = shown_value(trial)
        state = trial.state.name.lower()
        order.append(float(value) if value is not None and state in ("complete", "pruned") else math.nan)
        if value is None or state not in ("complete", "pruned"):
            continue
        for key, chosen in trial.params.items():
            if key in points:
                points[key].append((chosen, float(value), state))
    return points, order


def write_sweep_report(study: Any, spec: SweepSpec, out_dir: Path) -> Path:
    """Write `<out_dir>/report.md` and `figures/` for a sweep; returns the Markdown file's path."""
    from engine.plots import plot_sweep

    result = summary(study, spec)
    if not result["ranked"]:
        raise EngineError(f"sweep {spec.name} has no trials yet: nothing to report")
    figures = Path(out_dir) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    metric = spec.metric
    lines = [f"# Sweep {spec.name}", "",
             f"Base experiment `{spec.base}`; {result['done']}/{result['trials']} trials; {metric} "
             f"({spec.direction}); {spec.sampler} sampler, {spec.pruner} pruner; generated "
             f"{time.strftime('%Y-%m-%d %H:%M')}.", ""]
    keys = [p.key for p in spec.params]
    lines += ["## Trials", ""] + table(
        ["#", "trial", "state", metric, "epochs", *keys, "run"],
        [[f"{row['rank']}{' (best)' if row['best'] else ''}", row["trial"], row["state"],
          _metric_text(metric, row[metric]), row["epochs"], *[row["params"].get(k) for k in keys],
          Path(row["run_dir"]).name if row["run_dir"] else "-"] for row in result["ranked"]])
    if result["importances"]:
        lines += ["Parameter importances (fANOVA over the complete trials): " + ", ".join(
            f"{key} {share:.0%}" for key, share in result["importances"].items()) + ".", ""]
    elif sum(row["state"] == "complete" for row in result["ranked"]) >= 3:
        lines += ["Parameter importances: none to tell (no parameter varied among the complete trials, or their "
                  "values do not differ).", ""]
    points, order = _figure_points(study, spec)
    if any(points.values()):
        log_params = {p.key for p in spec.params if p.log}
        path = plot_sweep(points, order, metric, spec.direction == "maximize", log_params,
                          figures / f"{safe_name(spec.name)}-params.png", f"sweep {spec.name}")
        lines += ["## Parameters against the metric", "",
                  "Filled: complete trials; hollow: pruned (their last metric). Last panel: each trial's metric "
                  "and the best so far.", "", f"![parameters of {spec.name}]({figures.name}/{path.name})", ""]
    best = next((row for row in result["ranked"] if row["best"] and row["run_dir"]), None)
    if best is not None and Path(best["run_dir"]).is_dir():
        lines += [f"## The best trial: {best['trial']}"]
        lines += curves_section([Path(best["run_dir"])], figures)[1:]  # its curves, under this heading
        lines += environment_section([Path(best["run_dir"])])
    path = Path(out_dir) / "report.md"
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
