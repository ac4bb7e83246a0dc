"""PNG figures for reports: training curves (LR drops marked), fold-by-fold curves, confusion matrices, bars.

matplotlib is imported lazily and used through its object API with the Agg canvas (no pyplot, no global
backend switch), so plotting works headless and never disturbs a caller's own figures.
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import Any

CURVES = (("loss", ("train_loss", "val_loss")), ("accuracy", ("train_acc", "val_acc")), ("learning rate", ("lr",)))


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(str(path), format="png")
    return path


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(int(r["epoch"]), float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def _mark_drops(axis: Any, drops: list[float], color: str | None, label: str) -> None:
    for index, epoch in enumerate(drops):
        axis.axvline(epoch, color=color or "tab:red", linestyle=":", linewidth=1,
                     label=label if index == 0 else None)


def plot_curves(runs: list[tuple[str, list[dict[str, Any]], list[float]]], path: Path, title: str) -> Path:
    """Loss, accuracy and LR per epoch for one run or several (one line per run and metric); LR drops marked.

    `runs` holds (label, epoch rows, epochs of LR drops).
    """
    from matplotlib.ticker import MaxNLocator

    figure = _figure(15, 4)
    axes = figure.subplots(1, 3)
    many = len(runs) > 1
    for axis, (name, keys) in zip(axes, CURVES):
        for run_index, (label, rows, drops) in enumerate(runs):
            for key in keys:
                x, y = _series(rows, key)
                if not x:
                    continue
                style = "--" if key.startswith("train") else "-"
                color = f"C{run_index}" if many else None
                line_label = f"{label} {key}" if many else key
                axis.plot(x, y, style, color=color, label=line_label, marker="." if len(x) < 30 else None,
                          drawstyle="steps-post" if key == "lr" else "default")
            _mark_drops(axis, drops, f"C{run_index}" if many else None, f"{label} LR drop" if many else "LR drop")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if name == "learning rate" and _wide_positive(runs):
            axis.set_yscale("log")
        if name == "loss" and _loss_spans_decades(runs):
            axis.set_yscale("log")  # the first epoch's loss would squash the rest
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    return _save(figure, path)


def _wide_positive(runs: list[tuple[str, list[dict[str, Any]], list[float]]]) -> bool:
    values = [v for _label, rows, _drops in runs for v in _series(rows, "lr")[1]]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 20


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> Path:
    """A confusion-matrix heatmap (rows true, columns predicted); counts written in cells for small matrices."""
    import numpy as np

    counts = np.asarray(matrix, dtype=np.int64)
    size = len(classes)
    side = min(max(4.0, 0.45 * size + 2), 24.0)
    figure = _figure(side, side)
    axis = figure.subplots()
    image = axis.imshow(counts, cmap="Blues", interpolation="nearest")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    if size <= 40:
        axis.set_xticks(range(size), labels=classes, rotation=90, fontsize=7)
        axis.set_yticks(range(size), labels=classes, fontsize=7)
    if size <= 20:
        limit = counts.max() / 2 if counts.size else 0
        for i in range(size):
            for j in range(size):
                if counts[i, j]:
                    axis.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                              color="white" if counts[i, j] > limit else "black")
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title, fontsize=9)
    return _save(figure, path)


def plot_bars(labels: list[str], series: dict[str, list[float | None]], path: Path, title: str) -> Path:
    """Grouped accuracy bars (see `bar_figure`) saved as a PNG."""
    return _save(bar_figure(labels, series, title), path)


def bar_figure(labels: list[str], series: dict[str, list[float | None]], title: str) -> Any:
    """Grouped bars of accuracies (fractions), one group per label (run) and one bar per series (val acc, test
    acc, ...): a percent axis zoomed to the values (97% and 99% look different) and each value written on its
    bar; a missing value draws no bar."""
    from matplotlib.ticker import FuncFormatter

    figure = _figure(max(6.0, 0.8 * len(labels) + 3), 4.5)
    axis = figure.subplots()
    width = 0.8 / max(1, len(series))
    for index, (name, values) in enumerate(series.items()):
        xs = [i + index * width for i in range(len(labels))]
        percents = [100 * v if isinstance(v, (int, float)) else math.nan for v in values]
        bars = axis.bar(xs, percents, width, label=name)
        axis.bar_label(bars, labels=[f"{p:.2f}%" if p == p else "" for p in percents], fontsize=7,
                       rotation=90 if len(labels) * len(series) > 12 else 0, padding=2)
    axis.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels=labels, rotation=30, ha="right",
                    fontsize=7)
    low, high = accuracy_range([v for values in series.values() for v in values])
    axis.set_ylim(low, high)
    axis.set_yticks([t for t in axis.get_yticks() if low <= t <= 100])  # the room above 100% gets no ticks
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}%"))
    axis.set_ylabel("accuracy" if low == 0 else f"accuracy (axis from {low:g}%)")
    axis.legend(fontsize=8, loc="upper left", ncols=max(1, len(series)), frameon=False,
                bbox_to_anchor=(0, 1.0))
    axis.grid(axis="y", alpha=0.3)
    axis.set_title(title)
    return figure


def accuracy_range(values: list[float | None]) -> tuple[float, float]:
    """The percent axis for accuracies: from a round number below the lowest (0 when they spread widely), to a
    little above the highest, leaving room for the written values and the legend."""
    present = [100 * v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not present:
        return 0.0, 100.0
    lowest, highest = min(present), max(present)
    spread = max(highest - lowest, 1.0)
    low = math.floor((lowest - spread) / 5) * 5
    low = 0.0 if low < 20 else float(low)  # a wide spread keeps the honest 0-based axis
    high = highest + 0.25 * (highest - low) + 1
    return low, high


def _loss_spans_decades(runs: list[tuple[str, list[dict[str, Any]], list[float]]]) -> bool:
    """True when the plotted losses are positive and their largest is over 10x their smallest."""
    values = [v for _label, rows, _drops in runs for key in ("train_loss", "val_loss") for v in _series(rows, key)[1]]
    finite = [v for v in values if isinstance(v, float) and math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) > 10 * min(finite)


def plot_sweep(points: dict[str, list[tuple[Any, float, str]]], order: list[float], metric: str, maximize: bool,
               log_params: set[str], path: Path, title: str) -> Path:
    """A sweep at a glance: one panel per parameter (its value against the trial's metric, complete trials filled,
    pruned ones hollow; categories along the axis), and a last panel with the metric per trial in trial order
    and the best so far as a step line.

    `points` maps a parameter to (value, metric, state) per trial; `order` is the metric per trial number.
    """
    panels = len(points) + 1
    figure = _figure(min(4 * panels, 20), 3.6)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for axis, (param, rows) in zip(axes, points.items()):
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v, _m, _s in rows)
        categories = [] if numeric else sorted({str(v) for v, _m, _s in rows})
        for state, face in (("complete", "tab:blue"), ("pruned", "none")):
            chosen = [(v, m) for v, m, s in rows if s == state]
            if not chosen:
                continue
            xs = [v if numeric else categories.index(str(v)) for v, _m in chosen]
            axis.scatter(xs, [m for _v, m in chosen], facecolors=face, edgecolors="tab:blue", label=state)
        if not numeric:
            axis.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 3 else 0)
        elif param in log_params:
            axis.set_xscale("log")
        axis.set_xlabel(param)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
    last = axes[-1]
    trials = list(range(len(order)))
    last.scatter(trials, order, color="tab:gray", s=12, label="trial")
    best, running = [], None
    for value in order:
        if value == value:  # NaN: a trial without a value keeps the best so far
            running = value if running is None else (max if maximize else min)(running, value)
        best.append(running if running is not None else math.nan)
    last.step(trials, best, where="post", color="tab:green", label="best so far")
    last.set_xlabel("trial")
    last.set_ylabel(metric)
    last.legend(fontsize=8)
    last.grid(alpha=0.3)
    figure.suptitle(title)
    return _save(figure, path)
