"""Monitor's charts of one run, drawn on a plotext `plt` from a copy of its data (no UI, no torch): built in a
worker (console.widgets.background_plot) while the run's model keeps growing on the UI thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from console.run_model import RunModel


@dataclass(frozen=True)
class ChartData:
    """What the charts draw of one run, copied: the charts are built in a worker while the run's model grows."""

    step_x: tuple[float, ...] = ()
    step_loss: tuple[float, ...] = ()
    step_lr: tuple[float, ...] = ()
    epochs: tuple[tuple[int, dict[str, Any]], ...] = ()  # (epoch, its row), in order
    lr_drops: tuple[float, ...] = ()
    best_epoch: int | None = None  # of the `best` checkpoint, else of the top val accuracy

    @classmethod
    def of(cls, model: RunModel, steps: bool = True) -> ChartData:
        xs, losses, lrs = model.thinned_steps() if steps else ([], [], [])
        best = model.checkpoints.get("best") or (model.best[0] if model.best else None)
        return cls(tuple(xs), tuple(losses), tuple(lrs), tuple(sorted(model.rows.items())), tuple(model.lr_drops),
                   best)


def draw_loss(plt: Any, data: ChartData) -> None:
    """Step losses (gray), train and val loss per epoch, LR drops and the best epoch."""
    plt.clear_figure()  # data and axis limits of the previous drawing (maybe of another run)
    plt.title("loss")
    if data.step_x:
        plt.plot(list(data.step_x), list(data.step_loss), color="gray", marker="braille")
    epoch_losses = _plot_epochs(plt, data, "loss")
    if len(epoch_losses) >= 2:  # the first steps' loss would flatten every later epoch: clip the axis
        plt.ylim(0, 1.3 * max(epoch_losses))
    _marks(plt, data, "val_loss")
    _epoch_ticks(plt, data)


def draw_acc(plt: Any, data: ChartData) -> None:
    """Train and val accuracy (%) per epoch, LR drops and the best epoch."""
    plt.clear_figure()
    plt.title("accuracy")
    _plot_epochs(plt, data, "acc", scale=100)
    _marks(plt, data, "val_acc", scale=100)
    _epoch_ticks(plt, data)


def draw_lr(plt: Any, data: ChartData) -> None:
    """The learning rate per logged step, LR drops."""
    plt.clear_figure()
    plt.title("learning rate")
    if data.step_x:
        plt.plot(list(data.step_x), list(data.step_lr), color="cyan", marker="braille")
    for x in data.lr_drops:
        plt.vline(x, "orange")
    _epoch_ticks(plt, data)


def _epoch_ticks(plt: Any, data: ChartData) -> None:
    last = int(max([*data.step_x, *(epoch for epoch, _ in data.epochs)], default=0))
    if last >= 1:
        plt.xticks(whole_epoch_ticks(last))


def whole_epoch_ticks(last: int, most: int = 5) -> list[int]:
    """Whole epochs for an x axis that ends at epoch `last` (plotext's own ticks fall between them: 0.2, 3.9,
    7.6), at most `most`: 1 2 3 4, or 3 6 9 12 15."""
    step = -(-last // most)
    return list(range(step, last + 1, step)) if step > 1 else list(range(1, last + 1))


BEST_MARK = "◆"  # the `best` checkpoint's epoch on the val curve (Monitor's legend says so)


def _marks(plt: Any, data: ChartData, metric: str, scale: float = 1.0) -> None:
    """LR drops as lines; the best checkpoint's epoch as a mark on the val curve (a full-height line there read
    as the chart's frame), or a line when that epoch has no val value."""
    for x in data.lr_drops:
        plt.vline(x, "orange")
    if data.best_epoch:
        value = dict(data.epochs).get(data.best_epoch, {}).get(metric)
        if _finite(value):
            plt.scatter([data.best_epoch], [scale * value], marker=BEST_MARK, color="green")
        else:
            plt.vline(data.best_epoch, "green")


def _plot_epochs(plt: Any, data: ChartData, metric: str, scale: float = 1.0) -> list[float]:
    """Plot train_<metric> and val_<metric> per epoch; the values plotted."""
    plotted: list[float] = []
    for split, color in (("train", "blue"), ("val", "red")):
        points = [(e, scale * row[f"{split}_{metric}"]) for e, row in data.epochs
                  if _finite(row.get(f"{split}_{metric}"))]
        if points:
            plt.plot([p[0] for p in points], [p[1] for p in points], color=color, marker="dot")
            plotted.extend(p[1] for p in points)
    return plotted


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value and abs(value) != float("inf")
