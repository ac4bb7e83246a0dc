"""Monitor: live loss / accuracy / LR charts, epoch table, progress with ETA, device panel; several runs.

One thread worker tails every followed run's events.jsonl (engine.events.EventFollower) and reads its
status.json once a second; it posts `RunUpdate` messages, and the screen folds them into `RunModel`s. The
selected run's title line (state, epoch, last loss and lr, ETA, images/s) is redrawn at most ten times a
second, its charts and epoch table at most twice a second, each only when what it shows changed: the UI costs
the training next to it little CPU. The worker never touches a widget.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option
from textual.worker import get_current_worker

from console.device import device_summary
from console.fmt import fmt_count, fmt_lr, fmt_model, fmt_num, fmt_pct, middle_ellipsis
from console.fmt import fmt_seconds as fmt_s
from console.run_charts import ChartData, draw_acc, draw_loss, draw_lr
from console.run_model import RunModel, last_good_checkpoint
from console.widgets.background_plot import BackgroundPlot
from console.widgets.epoch_table import EpochTable
from console.widgets.nav import NavBar

# One legend line for every chart: labels drawn inside small plotext charts would cover their data.
POLL_S = 0.1  # how often the followed runs are tailed while they stream (events on screen within ~0.2 s)
IDLE_POLL_S = 0.05  # when nothing came last time: the next event is seen quickly
CHART_DRAWS = {"loss": draw_loss, "acc": draw_acc, "lr": draw_lr}  # chart id -> how it is drawn (console.run_charts)
CHARTS_AFTER_KEY_S = 0.05  # a key that selects a run: its title goes out first (a frame is 1/60 s), charts then
LEGEND = ("[blue]●[/] train  [red]●[/] val  [bright_black]⠒[/] steps  [cyan]⠒[/] lr  "
          "[green]◆[/] best ckpt  [dark_orange]│[/] LR drop")

STATE_MARKS = {"running": "[green]●[/]", "starting": "[cyan]◌[/]", "stopping": "[yellow]◍[/]",
               "finished": "[blue]✓[/]", "failed": "[red]✗[/]", "diverged": "[red]↯[/]",
               "interrupted": "[yellow]■[/]", "unknown": "[dim]?[/]"}


@dataclass
class Followed:
    """A run the poller tails: its folder, its follower and, when launched here, its process handle."""

    run_dir: Path
    follower: Any
    handle: Any = None
    next_status: float = 0.0


class RunUpdate(Message):
    """New events (and possibly a status or a launch failure) of one followed run, from the poller."""

    def __init__(self, run_dir: Path, events: list[Any], status: dict[str, Any] | None,
                 failure: str | None, restarted: bool) -> None:
        super().__init__()
        self.run_dir, self.events, self.status = run_dir, events, status
        self.failure, self.restarted = failure, restarted


class RunGone(Message):
    """A followed run's folder no longer exists (deleted from Runs or elsewhere), from the poller."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir


class MonitorScreen(Screen[None]):
    """Follow runs live; stop, resume or evaluate the selected one."""

    CSS_PATH = "monitor.tcss"
    BINDINGS = [
        Binding("s", "stop", "Stop",
                tooltip="stop the run gracefully: the current step ends and its last checkpoint is saved"),
        Binding("r", "resume", "Resume",
                tooltip="resume a stopped or failed run from its last checkpoint; a finished one: train it on"),
        Binding("e", "evaluate", "Evaluate", tooltip="open Evaluate with this run picked"),
        Binding("x", "close", "Close", tooltip="stop following the run here (it keeps training)"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models: dict[Path, RunModel] = {}
        self.followed: dict[Path, Followed] = {}  # replaced, never mutated: the poller reads it
        self.selected: Path | None = None
        self._dirty = False  # the title line is out of date
        self._list_width = 0  # the width the run names were last fitted to
        self._charts_dirty = False  # charts and epoch table are out of date
        self._running_runs: Any = None  # engine.runs.RunningRuns of the runs folder, made in the discovery worker
        self.dismissed: set[Path] = set()  # runs closed with `x`: never followed again by discovery
        self._texts: dict[str, str] = {}  # what each text widget shows (updated only on change)
        self._drawn: dict[str, tuple[Any, ...]] = {}  # what each chart and the table show: (model id, revisions)
        self._drawn_models: list[RunModel] = []  # those models, kept alive so that their ids stay unique
        self._row_cells: dict[Path, dict[int, tuple[dict[str, Any], tuple[str, ...]]]] = {}  # run -> epoch -> cells

    def compose(self) -> ComposeResult:
        yield NavBar()
        with Horizontal():
            with Vertical(id="side"):
                yield Static("Runs followed", classes="panel-title")
                yield OptionList(id="followed")
                yield Static("", id="device")
            with Vertical(id="main"):
                yield Static("No run followed yet: start one in Launch (F2) or open one from Runs (F4).",
                             id="title")
                # total=100: never indeterminate, which animates even while nothing runs
                yield ProgressBar(total=100, id="progress", show_eta=False)
                yield Static(LEGEND, id="legend")
                with Grid(id="charts"):
                    yield BackgroundPlot(id="loss")
                    yield BackgroundPlot(id="acc")
                    yield BackgroundPlot(id="lr")
                    yield EpochTable(id="epochs")
                yield Static("", id="messages")
        yield Footer()

    def on_mount(self) -> None:
        try:
            self.query_one("#epochs", EpochTable)
        except NoMatches:  # the app closed while this screen was being mounted (quit right after Start)
            return
        self._draw_empty()
        self.set_interval(0.1, self._redraw_if_dirty)
        self.set_interval(0.5, self._redraw_charts_if_dirty)
        self.set_interval(2.0, self._update_device)
        self._update_device()
        self._poll()
        self._discover_running()
        self.set_interval(2.0, self._discover_running)

    # --- following ---

    def follow_run(self, run_dir: Path, handle: Any = None, keep_selection: bool = False) -> None:
        """Follow a run (works before the screen is mounted); it becomes the selected one."""
        from engine.events import EventFollower
        from engine.runs import RunFolder

        run_dir = Path(run_dir).resolve()
        previous = self.followed.get(run_dir)
        if previous is not None and handle is None:
            handle = previous.handle
        if previous is None:
            self.models[run_dir] = RunModel(run_dir)
            follower = EventFollower(RunFolder(run_dir).events)
        else:
            follower = previous.follower
        self.followed = {**self.followed, run_dir: Followed(run_dir, follower, handle)}
        self.dismissed.discard(run_dir)
        if not (keep_selection and self.selected in self.followed):
            self.selected = run_dir
        self._dirty = True
        if self.is_mounted:
            self._refresh_list()

    def on_resize(self) -> None:
        """The title's parts are packed into lines of its width: packed again at the new one."""
        self._dirty = True

    @work(thread=True, exit_on_error=False, exclusive=True, group="discover")
    def _discover_running(self) -> None:
        """Follow the runs of the runs folder that are training now (started headless, before the app, or
        from another terminal while it is open) or were started since the screen opened (a short run may end
        between two scans); the selection moves only when nothing was followed."""
        from engine.runs import RunningRuns

        app: Any = self.app
        if self._running_runs is None or self._running_runs.root != app.runs_root:
            self._running_runs = RunningRuns(app.runs_root)
        for run_dir in self._running_runs.scan():
            path = run_dir.resolve()
            if path not in self.followed and path not in self.dismissed:
                self.app.call_from_thread(self.follow_run, path, None, self.selected is not None)

    @work(thread=True, exit_on_error=False, exclusive=True, group="poll")
    def _poll(self) -> None:
        """Tail every followed run; post what is new. Runs until the screen goes away."""
        from engine.errors import EngineError
        from engine.runs import read_status

        worker = get_current_worker()
        while not worker.is_cancelled:
            busy = False
            for item in list(self.followed.values()):
                events = item.follower.poll()
                status = failure = None
                now = time.monotonic()
                if now >= item.next_status or events:
                    item.next_status = now + 1.0
                    if not item.run_dir.exists():
                        self.post_message(RunGone(item.run_dir))
                        continue
                    try:
                        status = read_status(item.run_dir)
                    except (EngineError, OSError) as exc:
                        status = {"state": "unknown", "reason": str(exc)}
                    failure = item.handle.failure() if item.handle is not None else None
                if events or status is not None:
                    busy = busy or bool(events)
                    self.post_message(RunUpdate(item.run_dir, events, status, failure, item.follower.restarted))
            # A steady cadence, busy or not: events arriving meanwhile come in the next batch. Spinning while runs
            # stream held the GIL against the UI thread and sent it a message per few events.
            time.sleep(POLL_S if busy else IDLE_POLL_S)

    @on(RunUpdate)
    def _on_run_update(self, message: RunUpdate) -> None:
        model = self.models.get(message.run_dir)
        if model is None:
            return
        if message.restarted:
            model = self.models[message.run_dir] = RunModel(message.run_dir)
        before = (model.state, len(model.rows))
        model.apply_all(message.events)
        if message.status is not None:
            model.apply_status(message.status)
        if message.failure and not model.error:
            model.error = message.failure
            if model.state in ("running", "starting", "unknown"):
                model.state = "failed"
        changed = (model.state, len(model.rows)) != before
        if message.run_dir == self.selected and (message.events or changed or message.restarted):
            self._dirty = True
        if model.state != before[0]:  # the list shows each run's state mark and name: rebuilt only when they change
            self._refresh_list()

    # --- drawing ---

    def _refresh_list(self) -> None:
        options = self.query_one("#followed", OptionList)
        width = options.scrollable_content_region.width - 2  # an option's own padding
        highlighted = None
        options.clear_options()
        for index, (run_dir, model) in enumerate(self.models.items()):
            if run_dir not in self.followed:
                continue
            mark = STATE_MARKS.get(model.state, STATE_MARKS["unknown"])
            options.add_option(Option(_run_label(mark, model.name, width), id=str(run_dir)))
            if run_dir == self.selected:
                highlighted = options.option_count - 1
        if highlighted is not None:
            options.highlighted = highlighted
        if self.is_current and self.focused is None and options.option_count:
            options.focus()  # opened on an empty Monitor: up/down switch runs once the first is found

    @on(OptionList.OptionHighlighted, "#followed")
    def _select(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id is not None and Path(event.option.id) != self.selected:
            self.selected = Path(event.option.id)  # a key press: the title answers in the next frame,
            self.redraw()
            self._charts_dirty = True  # the charts and the table (slower to draw) after it has gone out
            self.set_timer(CHARTS_AFTER_KEY_S, self._redraw_charts_if_dirty)

    def _redraw_if_dirty(self) -> None:
        width = self.query_one("#followed", OptionList).scrollable_content_region.width
        if width != self._list_width:  # laid out or resized: the run names are fitted to the new width
            self._list_width = width
            self._refresh_list()
        if self._dirty:
            self._dirty = False
            self._charts_dirty = True
            self.redraw()

    def _redraw_charts_if_dirty(self) -> None:
        if self._charts_dirty:
            self._charts_dirty = False
            self.redraw_charts()

    def redraw(self) -> None:
        """Draw the selected run's title line, progress and messages (cheap: ten times a second)."""
        model = self.models.get(self.selected) if self.selected else None
        if model is None:
            return
        width = self.query_one("#title").content_size.width
        self._set_text("#title", pack_parts(self._title(model), width), layout=False)  # two lines (monitor.tcss)
        progress = round(100 * model.fraction, 1)
        bar = self.query_one("#progress", ProgressBar)
        if bar.progress != progress or bar.total != 100:
            bar.update(total=100, progress=progress)
        self._set_text("#messages", self._messages(model))

    def _set_text(self, selector: str, text: str, *, layout: bool = True) -> None:
        """Update a Static only when its text changes; `layout=False` for a widget of fixed size (an update with
        layout costs a layout pass of the whole screen, the slowest part of answering a key)."""
        if self._texts.get(selector) != text:
            self._texts[selector] = text
            self.query_one(selector, Static).update(text, layout=layout)

    def redraw_charts(self) -> None:
        """Draw the selected run's charts and epoch table (twice a second at most), each only when its data
        changed: the accuracy chart and the table change once an epoch, the others with the steps."""
        model = self.models.get(self.selected) if self.selected else None
        if model is None:
            return
        epochs = (id(model), model.epoch_revision)
        steps = (*epochs, model.step_revision)
        signatures = {"loss": steps, "acc": epochs, "lr": steps, "table": epochs}
        changed = [part for part, signature in signatures.items() if self._drawn.get(part) != signature]
        if not changed:
            return
        data = ChartData.of(model, steps="loss" in changed or "lr" in changed)  # one copy for every chart
        for part in changed:
            if part == "table":
                self._fill_table(model)
            else:
                self.query_one(f"#{part}", BackgroundPlot).draw(partial(CHART_DRAWS[part], data=data))
            self._drawn[part] = signatures[part]
        self._drawn_models = [model]

    def _title(self, model: RunModel) -> list[str]:
        """The title's parts (markup), most wanted first: a narrow screen shows the first that fit."""
        best = model.best
        parts = [f"[b]{model.name}[/b]", f"{STATE_MARKS.get(model.state, '?')} {model.state}",
                 f"epoch {model.epoch}/{model.epochs or '?'}"]
        if model.loading and model.state == "running":
            parts.append(model.loading)
        if model.state == "running" and model.step_loss:
            parts.append(f"loss {model.step_loss[-1]:.4g} lr {model.step_lr[-1]:.3g}")
        eta = model.eta_s()
        if eta is not None:
            parts.append(f"ETA {fmt_s(eta)}")
        if model.images_per_s and model.state == "running":  # a finished run's last step is no measure of it
            parts.append(f"{model.images_per_s:,.0f} img/s")
        kept = model.checkpoints.get("best")
        kept_acc = model.rows.get(kept, {}).get("val_acc") if kept is not None else None
        if kept is not None:  # `best val` as Runs and `runs list` give it: the val acc of the best checkpoint
            by = model.best_metric.replace("_", " ") if model.best_metric and model.best_metric != "val_acc" else ""
            parts.append(f"best val {fmt_pct(kept_acc)} (ep {kept}{', by ' + by if by else ''})")
        if model.test_acc is not None:  # before the top val: on a narrow screen the last parts are cut
            parts.append(f"test {fmt_pct(model.test_acc)}")
        if best and (kept_acc is None or best[1] > kept_acc):  # a higher val acc than the best checkpoint's
            parts.append(f"top val {fmt_pct(best[1])} (ep {best[0]})")
        return parts

    def _fill_table(self, model: RunModel) -> None:
        """The epoch table, newest first; each row's cells formatted once (a new row object: formatted again)."""
        cells = self._row_cells.setdefault(model.run_dir, {})
        shown = []
        for epoch in sorted(model.rows, reverse=True):
            row = model.rows[epoch]
            cached = cells.get(epoch)
            if cached is None or cached[0] is not row:
                cached = cells[epoch] = (row, _epoch_cells(row))
            shown.append(cached[1])
        self.query_one("#epochs", EpochTable).show(shown)

    def _messages(self, model: RunModel) -> str:
        lines = []
        if model.error:
            kept = last_good_checkpoint(model.run_dir)
            lines.append(f"[red]{model.state}: {escape(model.error)}[/]")
            lines.append(f"last good checkpoint: {kept}" if kept else "no checkpoint was saved")
        elif model.state == "interrupted":
            kept = last_good_checkpoint(model.run_dir)
            lines.append(f"[yellow]interrupted: {escape(str(model.reason))}[/] · resumable from {kept} (r)")
        for warning in model.warnings[-2:]:
            lines.append(f"[yellow]warning:[/] {escape(warning)}")
        if not lines and model.data:
            lines.append(f"[dim]{escape(model.data)} · {escape(fmt_model(model.model_preset, model.model))} · "
                         f"{fmt_count(model.params)} params[/]")
        return "\n".join(lines)

    def _update_device(self) -> None:
        self._set_text("#device", device_summary())

    # --- actions ---

    def _selected_model(self) -> RunModel | None:
        if self.selected is None:
            self.notify("No run selected", severity="warning")
            return None
        return self.models.get(self.selected)

    def action_stop(self) -> None:
        """Ask the selected run to stop gracefully (the step ends, `last` is saved)."""
        model = self._selected_model()
        if model is not None:
            self._request_stop(model.run_dir)

    @work(thread=True, exit_on_error=False, group="actions")
    def _request_stop(self, run_dir: Path) -> None:
        from engine.launch import request_stop

        asked = request_stop(run_dir)
        message = ("stop requested: the current step ends and `last` is saved" if asked
                   else f"{run_dir.name} is not training")
        self.app.call_from_thread(self.notify, message)

    def action_resume(self) -> None:
        """Resume the selected run (interrupted or failed with a `last` checkpoint) in a new child process."""
        model = self._selected_model()
        if model is None:
            return
        if model.state == "finished" and model.epochs and model.epoch >= model.epochs:
            from console.screens.runs_dialogs import EpochsDialog  # nothing left to resume: train it further?

            run_dir = model.run_dir

            def extend(epochs: int | None) -> None:
                if epochs is not None:
                    self._resume(run_dir, [f"train.epochs={epochs}"])

            self.app.push_screen(EpochsDialog(run_dir.name, model.epochs), extend)
            return
        self._resume(model.run_dir)

    @work(thread=True, exit_on_error=False, group="actions")
    def _resume(self, run_dir: Path, overrides: list[str] | None = None) -> None:
        from engine.errors import EngineError
        from engine.launch import launch_resume

        try:
            handle = launch_resume(run_dir, overrides)
        except EngineError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.follow_run, run_dir, handle)
        self.app.call_from_thread(self.notify, f"resuming {run_dir.name}")

    def action_evaluate(self) -> None:
        """Open Evaluate with the selected run's best checkpoint picked."""
        model = self._selected_model()
        if model is not None:
            app: Any = self.app
            app.evaluate_refs([str(model.run_dir)])

    def action_close(self) -> None:
        """Stop following the selected run (it keeps training)."""
        if self.selected is not None:
            self._forget(self.selected)

    @on(RunGone)
    def _run_gone(self, message: RunGone) -> None:
        if message.run_dir in self.followed:
            self._forget(message.run_dir)
            self.notify(f"{message.run_dir.name}: its folder was deleted; no longer followed", timeout=6)

    def _forget(self, run_dir: Path) -> None:
        """Stop following a run (closed, or its folder deleted); the next one followed is selected."""
        self.dismissed.add(run_dir)
        self.followed = {k: v for k, v in self.followed.items() if k != run_dir}
        self.models.pop(run_dir, None)
        self._row_cells.pop(run_dir, None)
        if self.selected == run_dir or self.selected not in self.followed:
            self.selected = next(iter(self.followed), None)
        self._refresh_list()
        if self.selected is None:
            self._clear()
        else:
            self.redraw()
            self.redraw_charts()

    def _clear(self) -> None:
        """Nothing followed: an empty screen saying how to follow a run."""
        self._drawn.clear()
        self._set_text("#title", "No run followed: start one in Launch (F2) or open one from Runs (F4).")
        self.query_one("#progress", ProgressBar).update(total=100, progress=0)
        self._set_text("#messages", "")
        self.query_one("#epochs", EpochTable).show([])
        self._draw_empty()

    def _draw_empty(self) -> None:
        """The charts' titles over empty axes."""
        for plot_id, draw in CHART_DRAWS.items():
            self.query_one(f"#{plot_id}", BackgroundPlot).draw(partial(draw, data=ChartData()))


def pack_parts(parts: list[str], width: int, separator: str = " · ") -> str:
    """Markup parts joined by `separator`, a new line instead where the next part would not fit in `width`
    cells (a part is never split: a cut line loses whole parts, not the number of `best ckpt ep 12`)."""
    if width <= 0:
        return separator.join(parts)
    lines: list[str] = []
    line, used = "", 0
    for part in parts:
        size = Text.from_markup(part).cell_len
        if line and used + len(separator) + size > width:
            lines.append(line)
            line, used = "", 0
        line, used = (line + separator + part, used + len(separator) + size) if line else (part, size)
    return "\n".join([*lines, line])


def _epoch_cells(row: dict[str, Any]) -> tuple[str, ...]:
    """One epoch's cells in the table's column order (console.widgets.epoch_table.COLUMNS)."""
    return (str(row["epoch"]), fmt_pct(row.get("val_acc")), fmt_num(row.get("val_loss")), fmt_pct(row.get("train_acc")),
            fmt_num(row.get("train_loss")), _epoch_time(row.get("epoch_s")), fmt_lr(row.get("lr")))


def _epoch_time(seconds: Any) -> str:
    """`0.4s`, `9.8s`, then as elsewhere (`12s`, `1m05s`): short epochs are not all `0s`."""
    return f"{seconds:.1f}s" if isinstance(seconds, (int, float)) and 0 <= seconds < 9.95 else fmt_s(seconds)


def _run_label(mark: str, name: str, width: int = 0) -> str:
    """`✓ quickstart` over a dim `20260101-090000`: a narrow side panel wraps names at their timestamp; a name
    still wider than `width` cells loses its middle (`quickstart…batch-t1`: the end tells trials apart)."""
    found = re.fullmatch(r"(.+)-(\d{8}-\d{6})", name)
    head, stamp = (found.group(1), found.group(2)) if found else (name, None)
    if width > 0:
        head = middle_ellipsis(head, width - 2)  # after the state mark and a space
    return f"{mark} {escape(head)}" + (f"\n  [dim]{stamp}[/]" if stamp else "")
