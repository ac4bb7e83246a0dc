"""The Sweeps screen: the sweeps of the runs folder; the chosen one's ranked trials and best-so-far chart, live.

A thread worker reads every sweep's study (engine.sweep_view: SQLite, no torch) when the screen is shown and
every POLL_S seconds while it stays shown, so a sweep running in another process (`imgcls-console sweep run`)
fills in as its trials finish. The worker never touches a widget: it posts `SweepsRead`. enter or m opens the
highlighted trial's run in Monitor; e opens Evaluate with the top K complete trials picked (their ensemble runs
with r there, so TTA and the combine rule can be chosen first).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, OptionList, Static
from textual.widgets.option_list import Option

from console.fmt import NO_VALUE, fmt_fixed, fmt_pct
from console.widgets.background_plot import BackgroundPlot
from console.widgets.nav import NavBar
from engine.errors import EngineError
from engine.sweep_view import SweepReader, SweepView, compact_params

POLL_S = 2.0  # how often a shown screen reads the studies again
TOP_K = 3  # trials `e` ensembles
WIDE = 100  # from this many columns the table shows whole run names (else their time stamp)
START_HINT = "imgcls-console sweep run quickstart-lr-batch"
STATE_STYLE = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan", "stopped": "magenta",
               "waiting": "dim"}
LEGEND = "[green]●[/] complete  [orange]●[/] pruned (its last epoch)  [cyan]•[/] best so far"


class SweepsRead(Message):
    """The worker read the studies: the sweeps' names, each readable one's view, one error line per other."""

    def __init__(self, names: list[str], views: dict[str, SweepView], errors: dict[str, str],
                 failure: str | None = None) -> None:
        super().__init__()
        self.names, self.views, self.errors, self.failure = names, views, errors, failure


def metric_text(metric: str, value: Any) -> str:
    """An accuracy as a percentage, a loss with 4 decimals; missing -> NO_VALUE."""
    return fmt_pct(value) if metric.endswith("acc") else fmt_fixed(value)


def short_run_name(run_dir: str | None, sweep: str, trial: int) -> str:
    """A trial's run folder name without its `<sweep>-t<N>-` prefix (the row names both already)."""
    if not run_dir:
        return NO_VALUE
    name = Path(run_dir).name
    return name.removeprefix(f"{sweep}-t{trial}-")


class SweepsScreen(Screen[None]):
    """Sweeps: pick one; its trials ranked, the best-so-far chart; open a trial or ensemble the best."""

    CSS_PATH = "sweeps.tcss"
    BINDINGS = [
        Binding("m", "monitor", "Monitor trial",
                tooltip="open the trial's run in Monitor (enter too; live while it trains)"),
        Binding("e", "ensemble", f"Ensemble top {TOP_K}",
                tooltip="open Evaluate with the best complete trials picked (r there runs their ensemble)"),
        Binding("r", "refresh", "Refresh", tooltip="read the sweeps again now"),
    ]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names: list[str] = []
        self.views: dict[str, SweepView] = {}
        self.errors: dict[str, str] = {}
        self.current: str | None = None  # the sweep shown
        self.wanted: str | None = None  # asked for by show_sweep, shown once read
        self.loaded = False  # a first read arrived
        self._reader: SweepReader | None = None  # used by one poll worker at a time
        self._polling = False
        self._shown: tuple[Any, ...] | None = None  # what the table and chart show (redrawn only on change)

    # ---------------------------------------------------------------- public

    def show_sweep(self, name: str) -> None:
        """Show this sweep (works before the screen is mounted, and before its study has been read)."""
        self.wanted = name
        if self.is_mounted and name in self.names:
            self._choose(name)

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        """The sweeps list, the chosen sweep's summary, trial table, chart and detail line."""
        yield NavBar()
        with Vertical(id="sweeps-body"):
            yield OptionList(id="sweeps-list")
            yield Static("reading the sweeps …", id="sweeps-title")
            yield DataTable(id="sweeps-trials", cursor_type="row", zebra_stripes=True)
            yield Static(LEGEND, id="sweeps-legend")
            yield BackgroundPlot(id="sweeps-chart")
            yield Static("", id="sweeps-detail", markup=False)
            yield Static("", id="sweeps-error", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        """The reader, the poll timer; the keyboard starts in the trial table."""
        self._reader = SweepReader(Path(getattr(self.app, "runs_root")))
        self.query_one("#sweeps-error").display = False
        self.query_one("#sweeps-trials", DataTable).focus()
        self.set_interval(POLL_S, self._tick)

    def on_screen_resume(self) -> None:
        """Read the studies each time the screen is shown (the first time too)."""
        self.action_refresh()

    def on_resize(self) -> None:
        """Whole run names or time stamps, by the width now available."""
        if self._shown is not None and self._shown[0] != self._wide():
            self._redraw()

    # ---------------------------------------------------------------- reading

    def _tick(self) -> None:
        """Keep the shown sweep live: read again every POLL_S while the screen is visible."""
        if self.is_current:
            self.action_refresh()

    def action_refresh(self) -> None:
        """Read the studies again now (once at a time: a slow read is never stacked on another)."""
        if not self._polling and self._reader is not None:
            self._polling = True
            self._poll(self._reader)

    @work(thread=True, exit_on_error=False, group="sweeps-poll")
    def _poll(self, reader: SweepReader) -> None:
        """Read every sweep of the runs folder (worker thread); always post, so the next read can start."""
        views: dict[str, SweepView] = {}
        errors: dict[str, str] = {}
        try:
            names = reader.names()
            for name in names:
                try:
                    views[name] = reader.read(name)
                except EngineError as exc:
                    errors[name] = str(exc)
        except Exception as exc:  # noqa: BLE001 - an unreadable runs folder or a bug: one line, the app stays up
            self.post_message(SweepsRead([], {}, {}, f"cannot read the sweeps of {reader.runs_root}: {exc}"))
            return
        self.post_message(SweepsRead(names, views, errors))

    @on(SweepsRead)
    def _read(self, message: SweepsRead) -> None:
        """Show what was read; a sweep that could not be read keeps its last view, with the reason shown."""
        self._polling = False
        self.loaded = True
        if message.failure:
            self._set_error(message.failure)
            return
        self.names = message.names
        self.views = {name: message.views.get(name) or self.views[name] for name in self.names
                      if name in message.views or name in self.views}
        self.errors = message.errors
        if self.wanted in self.names:
            self.current, self.wanted = self.wanted, None
        elif self.current not in self.names:
            self.current = self.names[0] if self.names else None
        self._fill_list()
        self._redraw()

    # ---------------------------------------------------------------- the sweeps list

    def _fill_list(self) -> None:
        """One line per sweep: name, base, done/planned, running, best; the shown one highlighted."""
        options = self.query_one("#sweeps-list", OptionList)
        labels = [self._list_label(name) for name in self.names]
        with options.prevent(OptionList.OptionHighlighted):  # a refill is not the person moving in the list
            if [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)] != \
                    [label.plain for label in labels]:
                options.clear_options()
                options.add_options(Option(label, id=name) for name, label in zip(self.names, labels))
            if self.current in self.names and options.highlighted != self.names.index(self.current):
                options.highlighted = self.names.index(self.current)
        self.set_class(not self.names, "-empty")

    def _list_label(self, name: str) -> Text:
        """`digits-lr  quickstart · 4/6 done · 1 running · best 97.2% (t3)`, or the sweep's error."""
        view = self.views.get(name)
        width = max(map(len, self.names))  # the names as one column
        if view is None:  # its error is the line under the table when it is the one shown
            reason = "cannot be read (r tries again)" if name in self.errors else "not read yet"
            return Text.assemble((name.ljust(width), "bold"), "  ", (reason, "red"))
        parts = [view.base, f"{view.done}/{view.planned if view.planned is not None else '?'} done"]
        if view.running:
            parts.append(f"{view.running} running")
        best = view.best
        if best is not None:
            parts.append(f"best {metric_text(view.metric, best[view.metric])} (t{best['trial']})")
        return Text.assemble((name.ljust(width), "bold"), "  ", " · ".join(parts))

    @on(OptionList.OptionHighlighted, "#sweeps-list")
    def _list_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Moving in the list shows that sweep."""
        if event.option.id is not None and event.option.id != self.current:
            self._choose(event.option.id)

    @on(OptionList.OptionSelected, "#sweeps-list")
    def _list_selected(self) -> None:
        """enter in the list goes to that sweep's trials."""
        self.query_one("#sweeps-trials", DataTable).focus()

    def _choose(self, name: str) -> None:
        """Show the sweep `name` (its trials from the top)."""
        self.current, self.wanted = name, None
        self._shown = None
        self._fill_list()
        self._redraw()
        table = self.query_one("#sweeps-trials", DataTable)
        if table.row_count:
            table.move_cursor(row=0)

    # ---------------------------------------------------------------- the chosen sweep

    def _view(self) -> SweepView | None:
        """The view of the shown sweep."""
        return self.views.get(self.current) if self.current else None

    def _wide(self) -> bool:
        """Whether the table has room for whole run names."""
        return self.size.width >= WIDE

    def _redraw(self) -> None:
        """Title, table, chart and error line of the shown sweep; the table and chart only when they changed."""
        view = self._view()
        error = self.errors.get(self.current or "")
        self._set_error(f"{error} (showing the last read)" if error and view else error or "")
        self.set_class(view is None, "-blank")
        if view is None:
            self._show_empty()
            return
        self.query_one("#sweeps-title", Static).update(self._title(view))
        shown = (self._wide(), view.name, view.ranked)
        if shown != self._shown:
            self._shown = shown
            self._fill_table(view)
            self._draw_chart(view)
        self._show_detail()
        self.refresh_bindings()

    def _title(self, view: SweepView) -> Text:
        """`sweep NAME · base · metric (direction) · sampler, pruner · done/planned · running`."""
        planned = view.planned if view.planned is not None else "?"
        parts = [f"base {view.base}", f"{view.metric} ({view.direction})", f"{view.sampler} sampler",
                 f"{view.pruner} pruner", f"{view.done}/{planned} trials done"]
        if view.running:
            parts.append(f"{view.running} running")
        return Text.assemble(("sweep ", "dim"), (view.name, "bold"), " · ", " · ".join(parts))

    def _show_empty(self) -> None:
        """No sweep to show: how to start one, that the shown one cannot be read, or that the studies are being
        read."""
        root = Path(getattr(self.app, "runs_root")) / "sweeps"
        if not self.loaded:
            text = "reading the sweeps …"
        elif self.current is not None:
            text = f"sweep {self.current} cannot be read: the reason is below"
        else:
            text = f"No sweeps in {root} yet. Start one in a terminal: `{START_HINT}`; it shows here live."
        self.query_one("#sweeps-title", Static).update(Text(text))
        self.query_one("#sweeps-trials", DataTable).clear(columns=True)
        self.query_one("#sweeps-detail", Static).update("")
        self.query_one("#sweeps-chart", BackgroundPlot).draw(lambda plt: plt.clear_figure())
        self._shown = None
        self.refresh_bindings()

    def _fill_table(self, view: SweepView) -> None:
        """The ranked trials; the cursor stays on the same trial across refreshes."""
        table = self.query_one("#sweeps-trials", DataTable)
        kept = self.highlighted_trial()
        table.clear(columns=True)
        table.add_columns("#", "trial", "state", view.metric.replace("_", " "), "ep", "params", "run")
        wide = self._wide()
        for row in view.ranked:
            run = Path(row["run_dir"]).name if wide and row["run_dir"] else \
                short_run_name(row["run_dir"], view.name, row["trial"])
            table.add_row(f"{row['rank']}{' ★' if row['best'] else ''}", str(row["trial"]),
                          Text(row["state"], style=STATE_STYLE.get(row["state"], "")),
                          metric_text(view.metric, row[view.metric]), str(row["epochs"]),
                          Text(compact_params(row["params"])), Text(run), key=str(row["trial"]))
        if kept is not None and str(kept["trial"]) in {str(r["trial"]) for r in view.ranked}:
            table.move_cursor(row=table.get_row_index(str(kept["trial"])))

    def _draw_chart(self, view: SweepView) -> None:
        """Each complete trial's metric (and each pruned one's last) by trial number; the running best as a line
        (built in a worker from this view, which is never changed: a refresh makes a new one)."""
        self.query_one("#sweeps-chart", BackgroundPlot).draw(partial(draw_sweep_chart, view=view))

    # ---------------------------------------------------------------- the highlighted trial

    def highlighted_trial(self) -> dict[str, Any] | None:
        """The row of the trial under the table's cursor."""
        view = self._view()
        table = self.query_one("#sweeps-trials", DataTable)
        if view is None or not table.row_count or not table.columns:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return next((row for row in view.ranked if str(row["trial"]) == key), None)

    @on(DataTable.RowHighlighted, "#sweeps-trials")
    def _show_detail(self) -> None:
        """The detail line: the highlighted trial's whole run name and parameters (the table may shorten them)."""
        row = self.highlighted_trial()
        detail = self.query_one("#sweeps-detail", Static)
        if row is None:
            detail.update("")
            return
        run = Path(row["run_dir"]).name if row["run_dir"] else "no run folder yet"
        params = ", ".join(f"{key}={value}" for key, value in row["params"].items()) or "no parameters yet"
        detail.update(f"trial {row['trial']}: {run} · {params}")

    @on(DataTable.RowSelected, "#sweeps-trials")
    def _row_selected(self) -> None:
        """enter on a trial opens its run in Monitor."""
        self.action_monitor()

    def action_monitor(self) -> None:
        """Open the highlighted trial's run in Monitor (running: live; finished: its curves)."""
        row = self.highlighted_trial()
        if row is None:
            self.notify("No trial highlighted", severity="warning")
            return
        if not row["run_dir"] or not Path(row["run_dir"]).is_dir():
            reason = "has no run folder yet" if not row["run_dir"] else f"run folder {row['run_dir']} is gone"
            self.notify(f"trial {row['trial']} ({row['state']}) {reason}", severity="warning")
            return
        getattr(self.app, "monitor_run")(Path(row["run_dir"]))

    def action_ensemble(self) -> None:
        """Open Evaluate with the top K complete trials picked (run their ensemble there with r)."""
        view = self._view()
        rows = view.top_complete(TOP_K) if view is not None else []
        if not rows:
            self.notify("No complete trial yet: nothing to ensemble", severity="warning")
            return
        if len(rows) < TOP_K:
            self.notify(f"only {len(rows)} complete trial{'s' if len(rows) > 1 else ''} of the top {TOP_K}")
        getattr(self.app, "evaluate_refs")([str(row["run_dir"]) for row in rows])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Monitor and Ensemble are offered (not dimmed) when the shown sweep has trials."""
        if action in ("monitor", "ensemble"):
            view = self._view() if self.is_mounted else None
            return True if view is not None and view.ranked else None
        return True

    def _set_error(self, text: str) -> None:
        """The one-line error under the detail line (hidden when empty)."""
        error = self.query_one("#sweeps-error", Static)
        error.update(text)
        error.display = bool(text)


def draw_sweep_chart(plt: Any, view: SweepView) -> None:
    """Each complete trial's metric (and each pruned one's last) by trial number; the running best as a line."""
    plt.clear_figure()
    scale = 100.0 if view.metric.endswith("acc") else 1.0
    plt.title(f"{view.metric.replace('_', ' ')}{' %' if scale == 100 else ''} by trial")
    plt.xlabel("trial")
    best = view.best_so_far()
    if best:  # one marker resolution for all series (braille lines would sit off the points' cells)
        xs, ys = _steps(best)
        plt.plot(xs, [scale * y for y in ys], color="cyan", marker="•")
    for state, color in (("pruned", "orange"), ("complete", "green")):
        points = view.points(state)
        if points:
            plt.scatter([x for x, _ in points], [scale * y for _, y in points], color=color, marker="●")
    numbers = [row["trial"] for row in view.ranked]
    if numbers and len(numbers) <= 20:
        plt.xticks(sorted(numbers))
    values = sorted({round(scale * y, 2) for state in ("pruned", "complete") for _, y in view.points(state)})
    if values and values[0] == values[-1]:  # all equal: plotext's own range put them on a row labelled otherwise
        plt.yticks(values)
        plt.ylim(values[0] - 1, values[0] + 1)
    # otherwise round ticks a row apart (BackgroundPlot): the points' own values, as ticks, shared rows on a
    # short chart and labelled a row with the wrong value; the table beside it has them exactly


def _steps(points: list[tuple[int, float]]) -> tuple[list[float], list[float]]:
    """A running best as a step line: flat until the next trial, then up (or down) at it."""
    xs: list[float] = []
    ys: list[float] = []
    for x, y in points:
        if ys:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(y)
    return xs, ys
