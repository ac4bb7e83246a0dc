"""The Launch screen's preview panels: LR schedule, data summary, LR finder, model size, save/export.

Each panel only shows what it is given (the screen computes it in thread workers); nothing here imports torch.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Static

from console.fmt import fmt_count, plural
from console.run_charts import whole_epoch_ticks
from console.widgets.background_plot import BackgroundPlot
from engine.preview import DataSummary, ModelCost, SchedulePreview

SAMPLE_PIXELS = 16  # sample images are drawn 16 px wide: 16 columns x 8 rows
MAX_PLOTTED_STEPS = 3000  # longer schedules are thinned for drawing (the terminal has fewer columns anyway)


def thin_series(series: list[tuple[float, float]], limit: int = MAX_PLOTTED_STEPS) -> list[tuple[float, float]]:
    """Every k-th point of a long series (and its last one), at most about `limit` points."""
    if len(series) <= limit:
        return series
    stride = math.ceil(len(series) / limit)
    thinned = series[::stride]
    return thinned if thinned[-1] == series[-1] else [*thinned, series[-1]]


class SchedulePanel(Vertical):
    """The LR of every optimizer step, LR drops marked, with the schedule's caveats."""

    DEFAULT_CSS = """
    SchedulePanel { height: 1fr; }
    SchedulePanel #schedule-info { height: auto; }
    SchedulePanel #schedule-plot { height: 1fr; min-height: 6; }
    SchedulePanel #schedule-notes { height: auto; max-height: 4; color: $text-muted; }
    SchedulePanel .error { color: $error; }
    """

    points = 0  # steps drawn in the plot

    def compose(self) -> ComposeResult:
        yield Static("waiting for the composition…", id="schedule-info", markup=False)
        yield BackgroundPlot(id="schedule-plot")
        yield Static("", id="schedule-notes", markup=False)

    def show(self, preview: SchedulePreview, schedule_name: str, peak_lr: float) -> None:
        """Draw the preview: LR per step against the epoch, a red line at each drop."""
        epochs = len(preview.series) // preview.steps_per_epoch
        info = self.query_one("#schedule-info", Static)
        info.remove_class("error")
        info.update(f"{schedule_name}: {epochs} epochs × {preview.steps_per_epoch} steps, peak lr {peak_lr:g}")
        drawn = thin_series(preview.series)
        self.points = len(drawn)
        self.query_one("#schedule-plot", BackgroundPlot).draw(partial(_draw_schedule, drawn=drawn,
                                                                      drops=list(preview.drops)))
        notes = []
        if preview.drops:
            notes.append("lr drops at the start of epochs: " + ", ".join(f"{d + 1:g}" for d in preview.drops))
        if len(drawn) < len(preview.series):
            notes.append(f"{len(preview.series)} steps, every {math.ceil(len(preview.series) / len(drawn))}th drawn")
        notes += [f"note: {preview.note}"] if preview.note else []
        notes += [f"warning: {preview.warning}"] if preview.warning else []
        self.query_one("#schedule-notes", Static).update("\n".join(notes))

    def show_message(self, text: str, *, error: bool = False) -> None:
        """No plot: say why (waiting for the data, or the data's error)."""
        info = self.query_one("#schedule-info", Static)
        info.set_class(error, "error")
        info.update(text)
        self.points = 0
        self.query_one("#schedule-plot", BackgroundPlot).draw(_clear)
        self.query_one("#schedule-notes", Static).update("")


class DataPanel(VerticalScroll):
    """Classes, images per split, a histogram of the training classes and a few sample images."""

    DEFAULT_CSS = """
    DataPanel { height: 1fr; }
    DataPanel #data-info { height: auto; }
    DataPanel #data-histogram { height: 10; }
    DataPanel #data-samples { height: auto; margin-top: 1; }
    DataPanel .error { color: $error; }
    """

    def compose(self) -> ComposeResult:
        yield Static("waiting for the composition…", id="data-info", markup=False)
        yield BackgroundPlot(id="data-histogram")
        yield Static("", id="data-samples")

    def show(self, summary: DataSummary, samples: list[tuple[str, RenderableType]]) -> None:
        """Fill the panel from a summary; `samples` are (class name, picture SAMPLE_PIXELS wide) pairs."""
        counts = {split: sum(values) for split, values in summary.counts.items()}
        lines = [
            f"{summary.source}: {summary.num_classes} classes, "
            f"{summary.channels}×{summary.image_size}×{summary.image_size} px",
            "images: " + " · ".join(f"{split} {count}" for split, count in counts.items()),
            "train mean [" + ", ".join(f"{v:.3f}" for v in summary.mean) + "]  std ["
            + ", ".join(f"{v:.3f}" for v in summary.std) + "]",
        ]
        if summary.info.get("skipped"):
            lines.append(f"skipped {plural(summary.info['skipped'], 'unreadable image')}")
        info = self.query_one("#data-info", Static)
        info.remove_class("error")
        info.update("\n".join(lines))
        self.query_one("#data-histogram", BackgroundPlot).display = True
        self._draw_histogram(summary)
        tiles = [Group(picture, Text(name, justify="center", overflow="ellipsis", no_wrap=True))
                 for name, picture in samples]
        columns = Columns(tiles, width=SAMPLE_PIXELS, padding=(0, 1)) if tiles else ""  # as many per row as fit
        self.query_one("#data-samples", Static).update(columns)

    def _draw_histogram(self, summary: DataSummary) -> None:
        self.query_one("#data-histogram", BackgroundPlot).draw(partial(
            _draw_histogram, classes=list(summary.classes), train=list(summary.counts.get("train", []))))

    def show_message(self, text: str, *, error: bool = False) -> None:
        """No data: say why (no empty chart frame under it)."""
        info = self.query_one("#data-info", Static)
        info.set_class(error, "error")
        info.update(text)
        histogram = self.query_one("#data-histogram", BackgroundPlot)
        histogram.draw(_clear)
        histogram.display = False
        self.query_one("#data-samples", Static).update("")


class LrFinderPanel(Vertical):
    """The LR range test: progress while it runs, then smoothed loss against LR and the suggestion."""

    DEFAULT_CSS = """
    LrFinderPanel { height: 1fr; }
    LrFinderPanel #lrfind-info { height: auto; }
    LrFinderPanel #lrfind-progress { height: 1; display: none; }
    LrFinderPanel #lrfind-plot { height: 1fr; min-height: 6; }
    LrFinderPanel #lrfind-buttons { height: 1; }
    LrFinderPanel #lrfind-buttons Button { margin-right: 2; }
    LrFinderPanel .error { color: $error; }
    """

    def compose(self) -> ComposeResult:
        yield Static("ctrl+l runs the LR range test on this composition (a few hundred steps, not saved)",
                     id="lrfind-info", markup=False)
        yield ProgressBar(total=100, id="lrfind-progress", show_eta=False)  # shown once a test runs
        yield BackgroundPlot(id="lrfind-plot")
        with Horizontal(id="lrfind-buttons"):
            yield Button("Run (ctrl+l)", id="lrfind-run", action="screen.lr_find", compact=True)
            yield Button("Apply (ctrl+g)", id="lrfind-apply", action="screen.apply_lr", compact=True,
                         disabled=True)

    def show_progress(self, done: int, total: int, lr: float) -> None:
        """Advance the bar."""
        bar = self.query_one("#lrfind-progress", ProgressBar)
        bar.display = True
        bar.update(total=total, progress=done)
        info = self.query_one("#lrfind-info", Static)
        info.remove_class("error")
        info.update(f"step {done}/{total}, lr {lr:.2g}")

    def show_result(self, series: list[dict[str, float]], suggestion: float | None, steps: int) -> None:
        """Smoothed loss against LR (log scale), the suggestion marked."""
        finite = [(math.log10(p["lr"]), p["smoothed"]) for p in series if math.isfinite(p["smoothed"])]
        self.query_one("#lrfind-plot", BackgroundPlot).draw(partial(
            _draw_lr_finder, points=finite, suggestion=math.log10(suggestion) if suggestion else None))
        self.query_one("#lrfind-progress", ProgressBar).update(total=steps, progress=steps)
        stopped = f" (stopped after {len(series)} of {steps} steps: the loss blew up)" if len(series) < steps else ""
        text = (f"suggested lr {suggestion:.3g}: ctrl+g applies it to optim.lr{stopped}" if suggestion
                else f"no suggestion (too few steps){stopped}")
        self.query_one("#lrfind-info", Static).update(text)
        self.query_one("#lrfind-apply", Button).disabled = suggestion is None

    def show_stale(self) -> None:
        """The composition changed since the test (data, model, augmentation, optimizer, batch...): its curve is
        kept, its suggestion cannot be applied."""
        self.show_message("the composition changed since this test (curve below): ctrl+l runs it again")
        self.query_one("#lrfind-apply", Button).disabled = True

    def show_message(self, text: str, *, error: bool = False) -> None:
        """A one-line state or error."""
        info = self.query_one("#lrfind-info", Static)
        info.set_class(error, "error")
        info.update(text)


class ModelPanel(VerticalScroll):
    """Parameters and MACs at the data's input, and the module tree."""

    DEFAULT_CSS = """
    ModelPanel { height: 1fr; }
    ModelPanel #model-info { height: auto; }
    ModelPanel #model-tree { height: auto; margin-top: 1; color: $text-muted; }
    ModelPanel .error { color: $error; }
    """

    def compose(self) -> ComposeResult:
        yield Static("waiting for the data's input size…", id="model-info", markup=False)
        yield Static("", id="model-tree", markup=False)

    def show(self, model_name: str, options: dict[str, Any], cost: ModelCost) -> None:
        """The model's size at its input."""
        shown_options = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
        lines = [
            f"{model_name} ({shown_options})",
            f"{fmt_count(cost.params)} parameters, {fmt_count(cost.macs) if cost.macs is not None else '?'} MACs "
            f"per image",
            f"input {cost.channels}×{cost.image_size}×{cost.image_size}, {cost.num_classes} classes",
        ]
        info = self.query_one("#model-info", Static)
        info.remove_class("error")
        info.update("\n".join(lines))
        self.query_one("#model-tree", Static).update(cost.summary)

    def show_message(self, text: str, *, error: bool = False) -> None:
        """No model size: say why."""
        info = self.query_one("#model-info", Static)
        info.set_class(error, "error")
        info.update(text)
        self.query_one("#model-tree", Static).update("")


class SharePanel(Vertical):
    """Save the composition as a user experiment preset, or export it to a YAML file to share."""

    DEFAULT_CSS = """
    SharePanel { height: 1fr; padding: 1 0 0 0; }
    SharePanel Label { margin-top: 1; }
    SharePanel .share-row { height: 1; }
    SharePanel .share-row Input { width: 1fr; }
    SharePanel .share-row Button { margin-left: 1; }
    SharePanel #share-status { height: auto; margin-top: 1; }
    SharePanel .error { color: $error; }
    """

    def compose(self) -> ComposeResult:
        yield Label("Save as a user experiment preset (name):")
        with Horizontal(classes="share-row"):
            yield Input(placeholder="a name, e.g. my-experiment", id="preset-name", compact=True)
            yield Button("Save (ctrl+s)", id="save-preset", action="screen.save_preset", compact=True)
        yield Checkbox("replace a user preset of that name", id="preset-overwrite", compact=True)
        yield Label("Export the resolved YAML to a file:")
        with Horizontal(classes="share-row"):
            yield Input(placeholder="a file, e.g. experiment.yaml", id="export-path", compact=True)
            yield Button("Export (ctrl+o)", id="export", action="screen.export", compact=True)
        yield Static("", id="share-status", markup=False)

    def show_status(self, text: str, *, error: bool = False) -> None:
        """What the last save/export did."""
        status = self.query_one("#share-status", Static)
        status.set_class(error, "error")
        status.update(text)


# --- the panels' charts, drawn in their BackgroundPlot's worker from the values given -------------------------

def _clear(plt: Any) -> None:
    plt.clear_figure()


def _draw_schedule(plt: Any, drawn: list[tuple[float, float]], drops: list[float]) -> None:
    """LR per step against the epoch, a red line at each drop."""
    plt.clear_figure()
    plt.plot([x + 1 for x, _ in drawn], [y for _, y in drawn], marker="braille", color="cyan")
    for drop in drops:
        plt.vline(drop + 1, "red")
    last = int(max((x + 1 for x, _ in drawn), default=0))
    if last >= 1:
        plt.xticks(whole_epoch_ticks(last))  # whole epochs, not 1.0 4.7 8.5
    plt.xlabel("epoch")
    plt.ylabel("lr")


def _draw_histogram(plt: Any, classes: list[str], train: list[int]) -> None:
    """Training images per class (class indices on the axis past 20 classes)."""
    plt.clear_figure()
    if len(classes) <= 20:
        plt.bar(classes, train, color="cyan", width=0.3)
    else:  # too many names for the axis: class indices
        plt.bar(list(range(len(classes))), train, color="cyan", width=1)
    plt.title("training images per class")


def _draw_lr_finder(plt: Any, points: list[tuple[float, float]], suggestion: float | None) -> None:
    """Smoothed loss against log10 LR (ticked with the LRs at whole decades), the suggestion marked."""
    plt.clear_figure()
    plt.plot([x for x, _ in points], [y for _, y in points], marker="braille")
    if suggestion is not None:
        plt.vline(suggestion, "green")
    decades = range(math.ceil(min((x for x, _ in points), default=0)), math.floor(max((x for x, _ in points),
                                                                                        default=0)) + 1)
    if len(decades) >= 2:  # the axis is log10 lr: labelled with the learning rates themselves
        plt.xticks(list(decades), [f"1e{decade}" if decade else "1" for decade in decades])
    plt.xlabel("lr (log scale)")
    plt.ylabel("smoothed loss")

