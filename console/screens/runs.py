"""The Runs screen: every run and k-fold group in one table.

Filter by typing, sort by any column, select runs (space) to overlay their curves and diff their configs; per
run: note and tags, Monitor (enter), Evaluate, resume, fine-tune, export the config as a preset, delete. The
folders are read in a thread worker (a thousand runs never freeze the screen) and again whenever the screen
comes back.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.coordinate import Coordinate
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane

from console.fmt import plural
from console.screens.run_rows import (
    CHART_COLORS, COLUMNS, KFOLD, LEGEND_COLORS, Comparison, RunRow, build_comparison, cell_texts, draw_overlay,
    filter_rows, load_rows, nest_folds, sort_rows,
)
from console.screens.launch_composition import field_override
from console.screens.runs_dialogs import ConfirmDialog, NoteDialog, PathDialog
from console.widgets.background_plot import BackgroundPlot
from console.widgets.nav import NavBar
from console.widgets.row_table import RowTable
from engine.annotations import Annotations
from engine.errors import EngineError
from engine.runs import RunFolder

STATE_STYLE = {"finished": "green", "running": "cyan", "starting": "cyan", "failed": "red", "diverged": "red",
               "interrupted": "yellow", "unknown": "dim"}
ACTIVE_STATES = ("running", "starting")  # a process may be writing the folder
SELECTED_MARK = "●"
NUMERIC_COLUMNS = {"best_val_acc", "test_acc", "epochs", "wall_s", "started"}  # these sort largest first


class RowsLoaded(Message):
    """The worker read the runs folder (`announce`: say how many runs, else keep the status line as it is)."""

    def __init__(self, rows: list[RunRow], announce: bool) -> None:
        super().__init__()
        self.rows = rows
        self.announce = announce


class ComparisonLoaded(Message):
    """The worker read the curves and configs of the selected runs."""

    def __init__(self, keys: frozenset[str], comparison: Comparison) -> None:
        super().__init__()
        self.keys = keys
        self.comparison = comparison


class ActionDone(Message):
    """A worker finished an action: a one-line result, and what to do next."""

    def __init__(self, text: str, *, error: bool = False, reload: bool = False,
                 monitor: Path | None = None, handle: Any = None) -> None:
        super().__init__()
        self.text = text
        self.error = error
        self.reload = reload
        self.monitor = monitor
        self.handle = handle  # the engine.launch.RunHandle of a process started for `monitor`


class NotesSaved(Message):
    """A run's note and tags were written."""

    def __init__(self, key: str, annotations: Annotations) -> None:
        super().__init__()
        self.key = key
        self.annotations = annotations


def _error_text(exc: BaseException) -> str:
    """An engine error's own words; anything else with its type (it is a bug, but the app stays up)."""
    return str(exc) if isinstance(exc, (EngineError, OSError)) else f"{type(exc).__name__}: {exc}"


class RunsScreen(Screen[None]):
    """Every run and k-fold group: filter, sort, select, compare; per-run actions."""

    CSS_PATH = "runs.tcss"
    SUB_TITLE = "Runs"
    # The footer shows the everyday keys; the rest are in the key panel (ctrl+p, "Keys") and the help (F1).
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter",
                tooltip="type to filter the runs (name, state, model, tags, note)"),
        Binding("space", "toggle_select", "Select",
                tooltip="select or unselect the run and move down (two or more: their curves overlaid, their "
                        "configs diffed)"),
        Binding("a", "select_shown", "Select all shown", show=False,
                tooltip="select every run the filter shows (again: unselect them)"),
        Binding("n", "edit_notes", "Note", tooltip="edit the run's note and tags"),
        Binding("e", "evaluate", "Eval", tooltip="open Evaluate with the selected runs (or this one) picked"),
        Binding("r", "resume", "Resume", show=False,
                tooltip="resume the run from its last checkpoint and watch it in Monitor"),
        Binding("f", "finetune", "Fine-tune", show=False,
                tooltip="open Launch on the run's config; Start fine-tunes from its best checkpoint"),
        Binding("x", "export", "Export preset", show=False,
                tooltip="write the run's resolved config as an experiment preset"),
        Binding("d,delete", "delete", "Delete",
                tooltip="delete the run or group folder (asks first; a running run is refused)"),
        Binding("s", "sort_next", "Sort by next column", show=False, tooltip="sort by the next column"),
        Binding("S", "sort_reverse", "Reverse the sort", show=False, tooltip="reverse the sort"),
        Binding("c", "compare_tab", "Curves/diff", tooltip="switch the comparison between curves and config diff"),
        Binding("ctrl+r", "reload", "Refresh", show=False, tooltip="read the runs folder again"),
        Binding("escape", "escape", "Leave filter / clear selection", show=False,
                tooltip="leave the filter; else clear the selection"),
    ]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[RunRow] = []
        self.shown: list[RunRow] = []
        self.selected: set[str] = set()  # row keys (folder paths), kept across filtering and reloads
        self._root_changed: int | None = None  # the runs folder's mtime when last read (a run added or removed)
        self._last_load = 0.0  # time.monotonic() of the last quiet reload
        self._count_said = False  # the status line shows how many runs there are (kept up to date)
        settings = getattr(self.app, "settings", {})  # the last session's sort (console/settings.py)
        self.sort_column = settings.get("runs_sort") if settings.get("runs_sort") in dict(COLUMNS) else "started"
        self.sort_descending = bool(settings.get("runs_sort_descending", True))
        self.compared: frozenset[str] = frozenset()
        self.overlay_labels: list[str] = []  # the series on the accuracy chart, one per compared run
        self.diff_keys: list[str] = []  # the config keys in the diff table
        self.loaded = False
        self.covered_by_dialog = False
        self.detail_key: str | None = None  # the row whose details the status line shows
        self.displayed: dict[str, dict[str, str]] = {}  # row key -> the cell texts in the table

    def compose(self) -> ComposeResult:
        """Filter bar, runs table, status line, comparison tabs (hidden until two runs are selected)."""
        yield NavBar()
        with Horizontal(id="runs-bar"):
            yield Input(placeholder="filter: name, model, data, state, tag  (/)", id="runs-filter")
            yield Static("", id="runs-count", markup=False)
        yield RowTable(id="runs-table", cursor_type="row", zebra_stripes=True, fixed_columns=3)  # mark, state, run
        yield Static("", id="runs-status", markup=False)
        with TabbedContent(id="runs-compare"):
            with TabPane("Curves", id="compare-curves"):
                yield Static("", id="runs-legend")  # one colour per run (inside the charts it hid the curves)
                with Horizontal(id="runs-charts"):
                    yield BackgroundPlot(id="runs-acc")
                    yield BackgroundPlot(id="runs-loss")
            with TabPane("Config diff", id="compare-diff"):
                yield DataTable(id="runs-diff", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        """The table's columns; the keyboard starts in the table."""
        table = self.query_one("#runs-table", DataTable)
        table.add_column(" ", key="mark", width=1)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.focus()
        self.set_interval(3.0, self._live_reload)

    def on_screen_suspend(self) -> None:
        """Remember whether a dialog covers the screen (its closing must not re-read every run)."""
        self.covered_by_dialog = isinstance(self.app.screen, ModalScreen)

    def _live_reload(self) -> None:
        """Keep the table live while the screen is shown (quietly): every 3 s while runs train or when a folder
        was added or removed (a run started from a shell), every 15 s anyway (a run resumed from a shell)."""
        if self.app.screen is not self:
            return
        root = Path(self.app.runs_root)
        try:
            changed = root.stat().st_mtime_ns
        except OSError:
            changed = None
        now = time.monotonic()
        if (changed != self._root_changed or now - self._last_load >= 15.0
                or any(row.state in ("running", "starting") for row in self.rows)):
            self._root_changed, self._last_load = changed, now
            self._load_rows(root, announce=False)

    def on_screen_resume(self) -> None:
        """Read the runs folder each time the screen is shown again (new runs, changed states), not when
        one of its dialogs (or the help, or the palette) closes."""
        if not self.covered_by_dialog:
            self.action_reload()
        self.covered_by_dialog = False

    # --- loading -------------------------------------------------------------------------------------

    def action_reload(self) -> None:
        """Read every run folder again, in a thread."""
        self._say(f"reading {self.app.runs_root} ...")
        self._load_rows(Path(self.app.runs_root), announce=True)

    @work(thread=True, exit_on_error=False, exclusive=True, group="runs-load")
    def _load_rows(self, root: Path, announce: bool) -> None:
        """Worker: every run and group of the runs folder, as rows."""
        try:
            rows = load_rows(root)
        except Exception as exc:  # load_rows tolerates bad folders; this is an unreadable runs folder
            self.post_message(ActionDone(f"cannot read {root}: {_error_text(exc)}", error=True))
            return
        self.post_message(RowsLoaded(rows, announce))

    @on(RowsLoaded)
    def _rows_loaded(self, message: RowsLoaded) -> None:
        """Show the rows read; selections of runs that are gone are dropped; a comparison of runs that have
        trained further (or been resumed to more epochs) since it was read is read again."""
        before = {row.key: _progress_mark(row) for row in self.rows if row.key in self.compared}
        self.rows = message.rows
        self.loaded = True
        self.selected &= {row.key for row in self.rows}
        if before and any(_progress_mark(row) != before.get(row.key) for row in self.rows if row.key in before):
            self.compared = frozenset()  # so that _selection_changed reads it again
        self._show_rows()
        if message.announce or self._count_said:  # a quiet reload keeps a count on show up to date
            runs = sum(1 for r in self.rows if r.kind != KFOLD)
            groups = len(self.rows) - runs
            self._say(plural(runs, "run") + (f", {plural(groups, 'k-fold group')}" if groups else "")
                      + f" in {self.app.runs_root}"
                      if self.rows else f"no runs in {self.app.runs_root} yet: start one in Launch (F2)")
            self._count_said = True
        self._selection_changed()

    # --- the table -----------------------------------------------------------------------------------

    def _show_rows(self) -> None:
        """Show the filtered, sorted rows; the cursor stays on the same run when it can.

        The table is updated, not refilled: the DataTable measures every cell it is given, so a thousand runs
        refilled on each key typed in the filter would stall the screen."""
        table = self.query_one("#runs-table", DataTable)
        current = self.current_row()
        text = self.query_one("#runs-filter", Input).value
        self.shown = nest_folds(sort_rows(filter_rows(self.rows, text), self.sort_column, self.sort_descending))
        groups = {row.name for row in self.shown if row.kind == KFOLD}
        wanted = {row.key: self._cells(row, nested=row.group in groups) for row in self.shown}
        gone = [key for key in self.displayed if key not in wanted]
        if len(gone) > len(wanted):  # removing row by row costs more than adding the few left
            table.clear()
            self.displayed.clear()
        else:
            for key in gone:
                table.remove_row(key)
                del self.displayed[key]
        for key, cells in wanted.items():
            before = self.displayed.get(key)
            if before is None:
                table.add_row(*[self._cell(column, text) for column, text in cells.items()], key=key)
            else:
                for column, text in cells.items():
                    if before[column] != text:
                        table.update_cell(key, column, self._cell(column, text), update_width=True)
            self.displayed[key] = cells
        order = {cells["name"]: index for index, cells in enumerate(wanted.values())}  # names are unique
        table.sort("name", key=lambda name: order[str(name)])
        keys = list(wanted)
        if current is not None and current.key in wanted:
            table.move_cursor(row=keys.index(current.key))
        self._update_count()

    def _cells(self, row: RunRow, nested: bool = False) -> dict[str, str]:
        """A row's cell texts by column key, in the table's column order (the selection mark first)."""
        texts = cell_texts(row, nested)
        return {"mark": SELECTED_MARK if row.key in self.selected else "", **{key: texts[key] for key, _ in COLUMNS}}

    def _cell(self, column: str, text: str) -> Text:
        """A cell: the state in its colour, everything else plain (names are never read as markup)."""
        return Text(text, style=STATE_STYLE.get(text, "") if column == "state" else "")

    def _update_count(self) -> None:
        """The `shown/all · selected · sort` line next to the filter."""
        label = dict(COLUMNS)[self.sort_column]
        arrow = "↓" if self.sort_descending else "↑"
        hidden = self.query_one("#runs-table", RowTable).hidden_sides
        more = f" · {hidden} more" if hidden else ""  # columns out of view: left / right scroll the table to them
        selected = f" · {len(self.selected)} selected" if self.selected else ""
        self.query_one("#runs-count", Static).update(
            f"{len(self.shown)}/{len(self.rows)}{selected} · by {label} {arrow}{more}")

    @on(RowTable.HiddenColumns)
    def _hidden_columns(self) -> None:
        self._update_count()

    def current_row(self) -> RunRow | None:
        """The run under the table's cursor."""
        table = self.query_one("#runs-table", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
        return next((row for row in self.shown if row.key == key), None)

    def _say(self, text: str, error: bool = False) -> None:
        """One line under the table: an action's result, or the highlighted run's note or problem."""
        status = self.query_one("#runs-status", Static)
        status.update(text)
        status.set_class(error, "error")
        self._count_said = False

    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self) -> None:
        """Each key typed in the filter narrows the table at once."""
        self._show_rows()

    @on(Input.Submitted, "#runs-filter")
    def _filter_submitted(self) -> None:
        """enter in the filter goes back to the table."""
        self.query_one("#runs-table", DataTable).focus()

    @on(DataTable.RowHighlighted, "#runs-table")
    def _row_highlighted(self) -> None:
        """The status line tells the highlighted run's note, or why it reads as unknown (once per new row, so
        refilling the table does not hide an action's result)."""
        row = self.current_row()
        if row is not None and row.key != self.detail_key:
            self.detail_key = row.key
            detail = row.problem or (f"note: {row.note}" if row.note else str(row.path))
            self._say(detail, error=bool(row.problem))

    @on(DataTable.HeaderSelected, "#runs-table")
    def _header_selected(self, message: DataTable.HeaderSelected) -> None:
        """A click on a header sorts by that column; a second click reverses it."""
        column = str(message.column_key.value)
        if column != "mark":
            self._sort_by(column, not self.sort_descending if column == self.sort_column
                          else column in NUMERIC_COLUMNS)

    def _sort_by(self, column: str, descending: bool) -> None:
        """Sort the table by a column (kept for the next session)."""
        self.sort_column, self.sort_descending = column, descending
        self._show_rows()
        remember = getattr(self.app, "remember", None)
        if remember is not None:
            remember(runs_sort=column, runs_sort_descending=descending)

    def action_sort_next(self) -> None:
        """Sort by the next column (numbers largest first)."""
        keys = [key for key, _ in COLUMNS]
        column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self._sort_by(column, column in NUMERIC_COLUMNS)

    def action_sort_reverse(self) -> None:
        """Reverse the sort order."""
        self._sort_by(self.sort_column, not self.sort_descending)

    def action_focus_filter(self) -> None:
        """Type to filter."""
        self.query_one("#runs-filter", Input).focus()

    def action_escape(self) -> None:
        """Leave the filter; else clear the selection."""
        if self.query_one("#runs-filter", Input).has_focus:
            self.query_one("#runs-table", DataTable).focus()
        elif self.selected:
            self.selected.clear()
            self._show_rows()
            self._selection_changed()

    # --- selection and comparison --------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The comparison's key only while a comparison is shown (two or more runs selected)."""
        if action == "compare_tab":
            compare = self.query("#runs-compare")  # (asked before it is composed too)
            return bool(compare) and compare.first().has_class("-shown")  # False: not in the footer
        return True

    def action_compare_tab(self) -> None:
        """Show the other tab of the comparison: curves or config diff."""
        tabs = self.query_one("#runs-compare", TabbedContent)
        tabs.active = "compare-diff" if tabs.active == "compare-curves" else "compare-curves"

    def action_toggle_select(self) -> None:
        """Select or unselect the current run, then move down (space, space, ... selects a block)."""
        row = self.current_row()
        if row is None:
            return
        self.selected.symmetric_difference_update({row.key})
        table = self.query_one("#runs-table", DataTable)
        mark = SELECTED_MARK if row.key in self.selected else ""
        table.update_cell(row.key, "mark", mark)
        self.displayed[row.key]["mark"] = mark
        table.action_cursor_down()
        self._update_count()
        self._selection_changed()

    def action_select_shown(self) -> None:
        """Select every run the filter shows (all of them already selected: unselect them)."""
        shown = {row.key for row in self.shown}
        self.selected = self.selected - shown if shown <= self.selected else self.selected | shown
        self._show_rows()
        self._selection_changed()

    def _selection_changed(self) -> None:
        """Show the overlay and diff for two or more selected runs; hide them otherwise."""
        panel = self.query_one("#runs-compare", TabbedContent)
        keys = frozenset(self.selected)
        if panel.has_class("-shown") != (len(keys) >= 2):
            panel.set_class(len(keys) >= 2, "-shown")
            self.refresh_bindings()  # the comparison's key comes and goes with it
            table = self.query_one("#runs-table", DataTable)  # shorter or taller now: keep the cursor's row in view
            self.call_after_refresh(lambda: table.move_cursor(row=table.cursor_row, scroll=True))
        if len(keys) < 2:
            self.compared = frozenset()
            return
        if keys != self.compared:
            self.compared = keys
            rows = [row for row in self.rows if row.key in keys]
            self._load_comparison(keys, rows)

    @work(thread=True, exit_on_error=False, exclusive=True, group="runs-compare")
    def _load_comparison(self, keys: frozenset[str], rows: list[RunRow]) -> None:
        """Worker: the curves and config differences of the selected runs."""
        try:
            self.post_message(ComparisonLoaded(keys, build_comparison(rows)))
        except Exception as exc:  # build_comparison skips bad runs; this is unexpected
            self.post_message(ActionDone(f"cannot compare: {_error_text(exc)}", error=True))

    @on(ComparisonLoaded)
    def _comparison_loaded(self, message: ComparisonLoaded) -> None:
        """Draw the overlay and fill the diff (unless the selection changed meanwhile)."""
        if message.keys != self.compared:
            return  # the selection changed while it was read
        comparison = message.comparison
        self._draw_curves(comparison)
        self._fill_diff(comparison)
        if comparison.skipped:
            self._say("not compared: " + "; ".join(comparison.skipped), error=True)

    def _draw_curves(self, comparison: Comparison) -> None:
        """One colour per run: val accuracy on the left; train (dots) and val (line) loss on the right (built in
        workers from this comparison, which is never changed: another selection makes a new one)."""
        self.query_one("#runs-acc", BackgroundPlot).draw(partial(draw_overlay, comparison=comparison, loss=False))
        self.query_one("#runs-loss", BackgroundPlot).draw(partial(draw_overlay, comparison=comparison, loss=True))
        self.overlay_labels = [c.label for c in comparison.curves if any(v is not None for v in c.val_acc)]
        legend = Text()
        for index, curve in enumerate(comparison.curves):
            plot_colour = CHART_COLORS[index % len(CHART_COLORS)]
            legend.append("  " if index else "").append("━━ ", style=LEGEND_COLORS.get(plot_colour, plot_colour))
            legend.append(curve.label)
        self.query_one("#runs-legend", Static).update(legend)

    def _fill_diff(self, comparison: Comparison) -> None:
        """The config keys that differ, one column per run."""
        table = self.query_one("#runs-diff", DataTable)
        table.clear(columns=True)
        table.add_column("config key", key="key")
        for label in comparison.labels:
            table.add_column(label)
        for key, values in zip(comparison.diff_keys, comparison.diff_values):
            table.add_row(Text(key), *[Text(v) for v in values], key=key)
        if not comparison.diff_keys and len(comparison.labels) > 1:
            table.add_row(Text("(same config)"), *["" for _ in comparison.labels])
        self.diff_keys = list(comparison.diff_keys)

    # --- per-run actions -----------------------------------------------------------------------------

    def _targets(self) -> list[RunRow]:
        """The selected runs, else the current one."""
        chosen = [row for row in self.shown if row.key in self.selected]
        current = self.current_row()
        return chosen or ([current] if current is not None else [])

    @on(DataTable.RowSelected, "#runs-table")
    def _open_row(self) -> None:
        """enter: a run opens in Monitor; a k-fold group opens in Evaluate."""
        row = self.current_row()
        if row is None:
            return
        if row.kind == KFOLD:
            self.app.evaluate_refs([row.name])  # type: ignore[attr-defined]
        else:
            self.app.monitor_run(row.path)  # type: ignore[attr-defined]

    def action_evaluate(self) -> None:
        """Evaluate the selected runs (or the current one): Evaluate picks them as checkpoint references."""
        targets = self._targets()
        if targets:
            self.app.evaluate_refs([row.name for row in targets])  # type: ignore[attr-defined]

    def action_edit_notes(self) -> None:
        """Edit the current run's note and tags in a dialog; saved by a worker."""
        row = self.current_row()
        if row is None:
            return

        def save(result: Annotations | None) -> None:
            """Save what the dialog returned (None: cancelled)."""
            if result is not None:
                self._save_notes(row, result)

        self.app.push_screen(NoteDialog(row.name, Annotations(row.note, list(row.tags))), save)

    @work(thread=True, exit_on_error=False, group="runs-action")
    def _save_notes(self, row: RunRow, notes: Annotations) -> None:
        """Worker: write notes.json through engine.annotations."""
        from engine.annotations import write_annotations

        try:
            written = write_annotations(row.path, note=notes.note, tags=notes.tags)
        except Exception as exc:
            self.post_message(ActionDone(f"{row.name}: note not saved: {_error_text(exc)}", error=True))
            return
        self.post_message(NotesSaved(row.key, written))

    @on(NotesSaved)
    def _notes_saved(self, message: NotesSaved) -> None:
        """Show the new note and tags without reading every run again."""
        notes = message.annotations
        self.rows = [dataclasses.replace(r, note=notes.note, tags=tuple(notes.tags)) if r.key == message.key else r
                     for r in self.rows]
        self._show_rows()
        self._say(f"saved: {notes.note or '(no note)'}  tags: {' '.join(notes.tags) or '(none)'}")

    def _single_run(self, verb: str) -> RunRow | None:
        """The current row when it is a run (not a k-fold group); says why not otherwise."""
        row = self.current_row()
        if row is None:
            return None
        if row.kind == KFOLD:
            self._say(f"{row.name} is a k-fold group: {verb} one of its folds", error=True)
            return None
        return row

    def action_resume(self) -> None:
        """Resume the current run in a child process and watch it in Monitor."""
        current = self.current_row()
        if current is not None and current.kind == KFOLD and current.state != "finished":
            self._say(f"{current.name} is a k-fold group: `imgcls-console resume {current.name}` finishes it in a "
                      "shell; here, r on one of its folds resumes that fold", error=True)
            return
        row = self._single_run("resume")
        if row is None:
            return
        if row.state in ACTIVE_STATES:
            self._say(f"{row.name} is {row.state}: nothing to resume (enter watches it)", error=True)
            return
        if row.state == "finished" and row.epochs and row.epoch is not None and row.epoch >= row.epochs:
            from console.screens.runs_dialogs import EpochsDialog  # nothing left to resume: train it further?

            def extend(epochs: int | None) -> None:
                if epochs is not None:
                    self._say(f"training {row.name} on to {epochs} epochs ...")
                    self._resume(row.path, [f"train.epochs={epochs}"])

            self.app.push_screen(EpochsDialog(row.name, row.epochs), extend)
            return
        self._say(f"resuming {row.name} ...")
        self._resume(row.path)

    @work(thread=True, exit_on_error=False, group="runs-action")
    def _resume(self, run_dir: Path, overrides: list[str] | None = None) -> None:
        """Worker: start the resume (engine.launch) and hand the run, with its process, to Monitor (which waits
        on the process: a refused resume's error is shown there, and no finished child is left unreaped)."""
        try:
            from engine.launch import launch_resume

            handle = launch_resume(run_dir, overrides)
        except Exception as exc:
            self.post_message(ActionDone(f"{run_dir.name}: not resumed: {_error_text(exc)}", error=True))
            return
        self.post_message(ActionDone(f"resumed {run_dir.name}", monitor=run_dir, handle=handle))

    def action_finetune(self) -> None:
        """Open Launch on the run's resolved config, named `<name>-ft`, whose Start fine-tunes from the run's best
        checkpoint (change the data, schedule, … there)."""
        row = self._single_run("fine-tune")
        if row is None:
            return
        config = RunFolder(row.path).config
        if not config.is_file():
            self._say(f"{row.name} has no config.yaml (half-written?): nothing to start from", error=True)
            return
        from engine.presets import load_mapping

        try:
            raw = load_mapping(config)
        except EngineError as exc:
            self._say(f"{row.name}: {exc}", error=True)
            return
        name = str(raw.get("name") or row.name)
        overrides = [field_override("name", f"{name}-ft")]
        schedule = raw.get("schedule") if isinstance(raw.get("schedule"), dict) else {}
        if schedule.get("plan_epochs") is not None or schedule.get("extend"):
            # the run was trained on (resume to more epochs): a new run plans its schedule over its own epochs,
            # as `finetune` does, and a from-scratch start or a saved preset of this composition too
            overrides += ["schedule.plan_epochs=null", "schedule.extend=[]"]
        self.app.launch_experiment(str(config), overrides, finetune_from=str(row.path))  # type: ignore[attr-defined]

    def action_export(self) -> None:
        """Write the run's fully resolved config as an experiment preset file."""
        row = self._single_run("export")
        if row is None:
            return
        default = Path.cwd() / f"{row.path.name}.yaml"

        def export(path: Path | None) -> None:
            """Export to the path the dialog returned (None: cancelled)."""
            if path is not None:
                self._export(row.path, path)

        self.app.push_screen(PathDialog(f"Export {row.name} as an experiment preset", default), export)

    @work(thread=True, exit_on_error=False, group="runs-action")
    def _export(self, run_dir: Path, out: Path) -> None:
        """Worker: write the run's resolved config as an experiment preset file."""
        from engine.presets import resolved_yaml
        from engine.runs import atomic_write_text, read_config

        try:
            text = resolved_yaml(read_config(run_dir))
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out, text)
        except Exception as exc:
            self.post_message(ActionDone(f"not exported: {_error_text(exc)}", error=True))
            return
        try:  # the shortest name for the one status line: from the working folder when inside it
            shown = out.resolve().relative_to(Path.cwd())
        except ValueError:
            shown = out
        self.post_message(ActionDone(f"wrote {shown}: `imgcls-console train {shown}` re-runs it"))

    def action_delete(self) -> None:
        """Delete the current run or group folder after a confirmation; a running one is refused."""
        row = self.current_row()
        if row is None:
            return
        if row.state in ACTIVE_STATES:
            self._say(f"{row.name} is {row.state}: stop it in Monitor before deleting it", error=True)
            return
        what = "k-fold group (all its folds)" if row.kind == KFOLD else "run"
        question = f"Delete the {what} {row.name}?\n{row.path}\nIts checkpoints and results are removed for good."

        def delete(confirmed: bool | None) -> None:
            """Delete once confirmed."""
            if confirmed:
                self._delete(row)

        self.app.push_screen(ConfirmDialog(question), delete)

    @work(thread=True, exit_on_error=False, group="runs-action")
    def _delete(self, row: RunRow) -> None:
        """Worker: check again that nothing trains there, then remove the folder."""
        try:
            refusal = _delete_refusal(row, Path(self.app.runs_root))
            if refusal:
                self.post_message(ActionDone(refusal, error=True))
                return
            shutil.rmtree(row.path)
        except Exception as exc:
            self.post_message(ActionDone(f"{row.name}: not deleted: {_error_text(exc)}", error=True, reload=True))
            return
        self.post_message(ActionDone(f"deleted {row.name}", reload=True))

    @on(ActionDone)
    def _action_done(self, message: ActionDone) -> None:
        """Say how an action went; open Monitor or read the runs again when it asks."""
        self._say(message.text, error=message.error)
        if message.monitor is not None:
            self.app.monitor_run(message.monitor, message.handle)  # type: ignore[attr-defined]
        elif message.reload:
            self._load_rows(Path(self.app.runs_root), announce=False)


def _progress_mark(row: RunRow) -> tuple[Any, ...]:
    """What changes when a run trains further or its config changes (a resume to more epochs)."""
    return (row.state, row.epoch, row.epochs, row.best_val_acc, row.test_acc)


def _delete_refusal(row: RunRow, runs_root: Path) -> str:
    """Why a folder must not be deleted now (running, or not inside the runs folder); '' when it may."""
    from engine.kfold import read_record
    from engine.runs import read_status

    path = row.path.resolve()
    if path == runs_root.resolve() or not path.is_relative_to(runs_root.resolve()):
        return f"{row.path} is not inside the runs folder {runs_root}: not deleted"
    folders = [row.path, *(row.path / name for name in row.members)]
    for folder in folders:
        try:
            state = read_status(folder).get("state")
        except EngineError:
            continue
        if state in ACTIVE_STATES:
            return f"{folder.name} is {state}: stop it in Monitor before deleting it"
    if row.kind == KFOLD:
        try:
            if read_record(row.path).get("state") == "running":
                return f"{row.name} is still training its folds: not deleted"
        except EngineError:
            pass
    return ""
