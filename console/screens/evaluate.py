"""The Evaluate screen: pick checkpoints across runs, evaluate one or ensemble several, with TTA.

Left: runs and k-fold groups expandable to their checkpoints (space picks; `all` and groups allowed), the split,
TTA, how members and views are combined, greedy selection. Right: progress (cancellable), accuracy and loss,
per-class precision/recall/F1, the confusion heatmap and most-confused pairs, the most confidently wrong images,
and the members with the greedy steps. The evaluation runs in the console's compute process (console/compute.py,
waited for by a thread worker) through the same engine functions as `imgcls-console eval` / `ensemble`, so it
reads and writes the same prediction cache and evals/ records; the UI process never imports torch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, ItemGrid, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import (
    Button, Checkbox, DataTable, Footer, Input, Label, ProgressBar, Select, Static, TabbedContent, TabPane,
)

from console.evaluation import EvalOutcome, EvalRequest
from console.screens.evaluate_parts import (
    CatalogGroup, CatalogRun, CheckpointTree, confusion_heatmap, greedy_table, load_catalog, members_table, num,
    pct,
)
from console.widgets.nav import NavBar
from engine.errors import Cancelled, EngineError
from engine.progress import Progress

DEFAULT = "default"  # the Select value meaning "the run's own eval setting"
SPLITS = [("test", "test"), ("val", "val")]
TTAS = [("run's eval.tta", DEFAULT), ("none", "none"), ("flip", "flip"), ("flip+shift", "flip+shift"),
        ("random:N", "random")]
COMBINES = [("run's eval.combine", DEFAULT), ("logits", "logits"), ("probs", "probs"), ("vote", "vote")]
PROGRESS_EVERY_S = 0.1  # progress messages per second from the worker, at most ~10


class CatalogLoaded(Message):
    """The worker listed the runs, groups and checkpoints."""

    def __init__(self, runs: list[CatalogRun], groups: list[CatalogGroup], error: str | None = None) -> None:
        super().__init__()
        self.runs = runs
        self.groups = groups
        self.error = error


class EvalProgress(Message):
    """How far the evaluation is."""

    def __init__(self, stage: str, done: int, total: int) -> None:
        super().__init__()
        self.stage = stage
        self.done = done
        self.total = total


class EvalDone(Message):
    """The evaluation finished."""

    def __init__(self, outcome: EvalOutcome) -> None:
        super().__init__()
        self.outcome = outcome


class EvalStopped(Message):
    """The evaluation failed (a one-line reason) or was cancelled."""

    def __init__(self, text: str, *, cancelled: bool = False) -> None:
        super().__init__()
        self.text = text
        self.cancelled = cancelled


class EvaluateScreen(Screen[None]):
    """Checkpoints → accuracy, per-class scores, confusion heatmap, wrong images, TTA, ensembles."""

    CSS_PATH = "evaluate.tcss"
    BINDINGS = [
        Binding("r", "run", "Run", tooltip="evaluate the picks with the options below (ensembled when several)"),
        Binding("c", "cancel", "Cancel", tooltip="cancel the running evaluation"),
        Binding("x", "clear", "Clear picks", show=False, tooltip="unpick everything"),
        Binding("g", "toggle_greedy", "Greedy", show=False,
                tooltip="greedy ensemble selection on the val split, on or off"),
        Binding("1", "show_tab('tab-classes')", "Classes", show=False, tooltip="show the per-class scores"),
        Binding("2", "show_tab('tab-confusion')", "Confusion", show=False,
                tooltip="show the confusion heatmap and the most-confused pairs"),
        Binding("3", "show_tab('tab-wrong')", "Wrong", show=False,
                tooltip="show the most confidently wrong images"),
        Binding("4", "show_tab('tab-members')", "Members", show=False,
                tooltip="show the members (and greedy selection's steps)"),
        Binding("escape", "cancel", "Cancel", show=False, tooltip="cancel the running evaluation"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.picked: list[str] = []
        self._reveal_picks = False  # set by pick(): show the first pick once the runs are listed
        self.outcome: EvalOutcome | None = None
        self._progress: Progress | None = None  # set while an evaluation runs
        self._last_post = 0.0
        self._started = 0.0

    # ---------------------------------------------------------------- public

    def pick(self, refs: list[str]) -> None:
        """Pick these references (RUN, RUN:best, RUN:epoch-012, RUN:all, a k-fold group), replacing the picks;
        works before the screen is mounted."""
        self.picked = list(dict.fromkeys(refs))
        self._reveal_picks = True  # the tree's cursor goes to the first of them once the runs are listed
        if self.is_mounted:
            self._show_picked()
            if self._progress is None and self.outcome is not None:  # the last result was of other picks
                self._clear_results()
                self.query_one("#eval-progress-row").display = False  # its `100% done … saved` too

    # ---------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        """The picker on the left, progress, summary and result tabs on the right."""
        yield NavBar()
        with Horizontal(id="eval-body"):
            with Vertical(id="eval-picker"):
                yield Static("Checkpoints [dim](space picks)[/]", classes="panel-title")
                yield CheckpointTree(id="eval-tree")
                yield Static(id="eval-picked")
                with Horizontal(classes="eval-option"):
                    yield Label("split", classes="eval-label")
                    yield Select(SPLITS, value="test", allow_blank=False, compact=True, id="eval-split")
                with Horizontal(classes="eval-option"):
                    yield Label("TTA", classes="eval-label")
                    yield Select(TTAS, value=DEFAULT, allow_blank=False, compact=True, id="eval-tta")
                    yield Input("8", type="integer", compact=True, id="eval-passes", tooltip="random passes N")
                with Horizontal(classes="eval-option"):
                    yield Label("combine", classes="eval-label")
                    yield Select(COMBINES, value=DEFAULT, allow_blank=False, compact=True, id="eval-combine")
                with Horizontal(classes="eval-option", id="eval-greedy-row"):
                    yield Checkbox("greedy on val", compact=True, id="eval-greedy")
                    yield Button("Run", variant="primary", compact=True, id="eval-run")
            with Vertical(id="eval-results"):
                with Horizontal(id="eval-progress-row"):
                    yield ProgressBar(show_eta=False, id="eval-progress")
                    yield Static("", id="eval-stage")
                yield Static("Pick checkpoints, then r to run.", id="eval-status")
                yield Static("", id="eval-summary")
                yield from self._compose_tabs()
        yield Footer()

    def _compose_tabs(self) -> ComposeResult:
        """Per-class scores, confusion heatmap, wrong images, members and greedy steps."""
        with TabbedContent(id="eval-tabs"):
            with TabPane("Classes", id="tab-classes"):
                yield DataTable(id="eval-classes", cursor_type="row", zebra_stripes=True)
            with TabPane("Confusion", id="tab-confusion"):
                with VerticalScroll(id="eval-confusion"):
                    yield Static(id="eval-heatmap")
                    yield Static("most confused", classes="panel-title")
                    yield DataTable(id="eval-confused", cursor_type="row")
            with TabPane("Wrong", id="tab-wrong"):
                with VerticalScroll(id="eval-wrong-scroll"):
                    yield Static("", id="eval-wrong-title")
                    yield ItemGrid(id="eval-wrong", min_column_width=18)
            with TabPane("Members", id="tab-members"):
                with VerticalScroll(id="eval-members-scroll"):
                    yield Static(id="eval-members")
                    yield Static(id="eval-greedy-steps")
                    yield Static("", id="eval-stopped")
                    yield Static("", id="eval-notes")

    def on_mount(self) -> None:
        """Table columns; the TTA passes field appears only for random:N, progress from the first run."""
        self.query_one("#eval-passes", Input).display = False
        self.query_one("#eval-progress-row").display = False  # shown from the first run on
        self.query_one("#eval-classes", DataTable).add_columns("class", "precision", "recall", "F1", "support")
        self.query_one("#eval-confused", DataTable).add_columns("true", "predicted as", "count")

    def on_screen_resume(self) -> None:
        """Each time the screen is shown (the first time too): the picks, and the runs folder read again."""
        self._show_picked()
        self._load_catalog()

    def on_unmount(self) -> None:
        """Cancel a running evaluation when the screen goes away."""
        if self._progress is not None:  # the app is closing: let the worker thread end soon
            self._progress.cancel.set()

    # ---------------------------------------------------------------- picking

    @work(thread=True, exit_on_error=False, exclusive=True, group="evaluate-catalog")
    def _load_catalog(self) -> None:
        """List runs, groups and checkpoints (worker thread)."""
        root = getattr(self.app, "runs_root")
        try:
            runs, groups = load_catalog(root)
        except (EngineError, OSError) as exc:
            self.post_message(CatalogLoaded([], [], f"cannot list the runs of {root}: {exc}"))
            return
        self.post_message(CatalogLoaded(runs, groups))

    @on(CatalogLoaded)
    def _catalog_loaded(self, message: CatalogLoaded) -> None:
        """Show the listed runs in the tree, the picks marked."""
        if message.error:
            self._set_status(message.error, error=True)
            return
        tree = self.query_one(CheckpointTree)
        tree.show_catalog(message.runs, message.groups, self.picked)
        self._show_picked()
        if self._reveal_picks:  # picked from another screen: may be far down a long list
            self._reveal_picks = False
            tree.reveal(self.picked)
        if not message.runs and not message.groups:
            self._set_status("No runs yet in this runs folder: train one (F2 Launch).")

    @on(CheckpointTree.Toggled)
    def _toggled(self, message: CheckpointTree.Toggled) -> None:
        """Space in the tree: pick or unpick that reference."""
        if message.ref in self.picked:
            self.picked.remove(message.ref)
        else:
            self.picked.append(message.ref)
        self._show_picked()

    def _show_picked(self) -> None:
        """Mark the picks in the tree; name the picks the tree does not list."""
        tree = self.query_one(CheckpointTree)
        tree.mark(self.picked)
        unlisted = [ref for ref in self.picked if ref not in tree.known_refs()]  # marked nowhere in the tree
        text = f"{len(self.picked)} picked (x clears)" if self.picked else "nothing picked"
        if unlisted:
            text += ", also: " + ", ".join(unlisted)
        self.query_one("#eval-picked", Static).update(Text(text))

    def on_resize(self) -> None:
        """Names fitted to the tree's new width (a narrow tree loses their middles, never `→ best`)."""
        if self.is_mounted:
            self.call_after_refresh(self.query_one(CheckpointTree).mark, self.picked)

    def action_show_tab(self, tab: str) -> None:
        """Show one of the result tabs."""
        self.query_one("#eval-tabs", TabbedContent).active = tab

    def action_clear(self) -> None:
        """Unpick everything."""
        self.pick([])

    def action_toggle_greedy(self) -> None:
        """Greedy selection on or off."""
        box = self.query_one("#eval-greedy", Checkbox)
        box.value = not box.value

    @on(Select.Changed, "#eval-tta")
    def _tta_changed(self, event: Select.Changed) -> None:
        """Show the passes field for random:N only."""
        self.query_one("#eval-passes", Input).display = event.value == "random"

    # ---------------------------------------------------------------- running

    def _request(self) -> EvalRequest | None:
        """The evaluation the widgets describe; None (and a message) when they cannot."""
        if not self.picked:
            self._set_status("Nothing picked: space on a run or checkpoint in the list.", error=True)
            return None
        tta = str(self.query_one("#eval-tta", Select).value)
        if tta == "random":
            passes = self.query_one("#eval-passes", Input).value.strip()
            if not passes.isdigit() or int(passes) < 1:
                self._set_status("random:N needs a positive number of passes N.", error=True)
                return None
            tta = f"random:{int(passes)}"
        combine = str(self.query_one("#eval-combine", Select).value)
        return EvalRequest(getattr(self.app, "runs_root"), list(self.picked),
                           str(self.query_one("#eval-split", Select).value), None if tta == DEFAULT else tta,
                           None if combine == DEFAULT else combine, self.query_one("#eval-greedy", Checkbox).value)

    @on(Button.Pressed, "#eval-run")
    def _run_pressed(self) -> None:
        """The Run button."""
        self.action_run()

    def action_run(self) -> None:
        """Start evaluating the picks with the chosen options (one at a time)."""
        if self._progress is not None:
            self.notify("An evaluation is running; c cancels it.")
            return
        request = self._request()
        if request is None:
            return
        self._progress = Progress(callback=self._post_progress, log_warnings=False)  # shown, not logged
        self._started = time.monotonic()
        self.query_one("#eval-progress-row").display = True
        self.query_one("#eval-progress", ProgressBar).update(total=None, progress=0)
        self.query_one("#eval-stage", Static).update("starting")
        self._set_status("")
        self._clear_results()
        self._evaluate(request, self._progress)
        self.refresh_bindings()

    def action_cancel(self) -> None:
        """Ask the running evaluation to stop after its current batch."""
        if self._progress is None:
            return
        self._progress.cancel.set()
        self.query_one("#eval-stage", Static).update("cancelling…")

    def _post_progress(self, stage: str, done: int, total: int) -> None:
        """The engine's progress callback (worker thread): a message at most every PROGRESS_EVERY_S."""
        now = time.monotonic()
        if done >= total or now - self._last_post >= PROGRESS_EVERY_S:
            self._last_post = now
            self.post_message(EvalProgress(stage, done, total))

    @work(thread=True, exit_on_error=False, exclusive=True, group="evaluate")
    def _evaluate(self, request: EvalRequest, progress: Progress) -> None:
        """Run the evaluation in the compute process (this worker thread waits for it, passing on its progress
        and the cancel flag) and post its outcome, failure or cancellation."""
        from console.compute import shared

        try:
            outcome = shared().call("console.evaluation:evaluate", request, progress=progress.callback,
                                    cancel=progress.cancel)
        except Cancelled:
            self.post_message(EvalStopped("Cancelled: nothing was saved for this evaluation.", cancelled=True))
        except EngineError as exc:
            self.post_message(EvalStopped(str(exc)))
        except Exception as exc:  # a bug or an unreadable file: one line, the app stays up
            self.post_message(EvalStopped(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(EvalDone(outcome))

    @on(EvalProgress)
    def _progressed(self, message: EvalProgress) -> None:
        """Move the progress bar and name the stage."""
        if self._progress is None or self._progress.cancel.is_set():
            return
        self.query_one("#eval-progress", ProgressBar).update(total=max(1, message.total), progress=message.done)
        self.query_one("#eval-stage", Static).update(Text(message.stage, no_wrap=True, overflow="ellipsis"))

    @on(EvalStopped)
    def _stopped(self, message: EvalStopped) -> None:
        """Show why the evaluation ended early (one line)."""
        self._progress = None
        self.refresh_bindings()
        self.query_one("#eval-progress", ProgressBar).update(total=100, progress=0)
        self.query_one("#eval-stage", Static).update("cancelled" if message.cancelled else "failed")
        self._set_status(message.text, error=not message.cancelled, warning=message.cancelled)

    def _shown_path(self, path: str | None) -> str:
        """A saved record's path, relative to the runs folder when inside it."""
        root = getattr(self.app, "runs_root")
        try:
            return str(Path(str(path)).relative_to(root))
        except ValueError:
            return str(path)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Run is offered while idle, Cancel while an evaluation runs (the footer shows only what applies)."""
        if action == "run":
            return self._progress is None
        if action == "cancel":
            return self._progress is not None
        return True

    def _set_status(self, text: str, *, error: bool = False, warning: bool = False) -> None:
        """The one-line status under the progress bar (hidden when empty)."""
        status = self.query_one("#eval-status", Static)
        status.update(Text(text))
        status.display = bool(text)
        status.set_class(error, "error")
        status.set_class(warning, "warning")

    # ---------------------------------------------------------------- results

    @on(EvalDone)
    def _done(self, message: EvalDone) -> None:
        """Show every part of a finished evaluation."""
        self._progress = None
        self.refresh_bindings()
        self.outcome = outcome = message.outcome
        result = outcome.result
        self.query_one("#eval-progress", ProgressBar).update(total=1, progress=1)
        saved = " · saved (path in Members)" if result.get("path") else ""
        self.query_one("#eval-stage", Static).update(f"done in {time.monotonic() - self._started:.1f} s{saved}")
        self._set_status("")
        self._show_summary(outcome)
        self._show_classes(result)
        self._show_confusion(result)
        self._show_wrong(outcome)
        self._show_members(outcome)

    def _clear_results(self) -> None:
        """No result on screen while another evaluation runs: a failing one must not sit above the last one's
        numbers, which would read as its own."""
        self.outcome = None
        self.query_one("#eval-summary", Static).update("")
        self.query_one("#eval-classes", DataTable).clear()
        self.query_one("#eval-heatmap", Static).update("")
        self.query_one("#eval-confused", DataTable).clear()
        self.query_one("#eval-wrong-title", Static).update("")
        self.query_one("#eval-wrong", ItemGrid).remove_children()
        for selector in ("#eval-members", "#eval-greedy-steps", "#eval-stopped", "#eval-notes"):
            self.query_one(selector, Static).update("")

    def _show_summary(self, outcome: EvalOutcome) -> None:
        """Accuracy, loss, top-k and macro F1, then what was evaluated."""
        result = outcome.result
        cached = " · cached predictions" if result.get("cached") else ""
        warned = (f" · {len(outcome.warnings)} warning{'s' if len(outcome.warnings) > 1 else ''} in Members"
                  if outcome.warnings else "")
        text = Text.assemble("accuracy ", (pct(result["accuracy"]), "bold"), "  loss ", (num(result["loss"]), "bold"),
                             f"  top-{result.get('top_k', 5)} {pct(result.get('top5'))}",
                             f"  macro F1 {num(result.get('macro_f1'))}\n",
                             (f"{result['title']} · {result['count']} images{cached}", "dim"), (warned, "yellow"))
        self.query_one("#eval-summary", Static).update(text)

    def _show_classes(self, result: dict[str, Any]) -> None:
        """Per-class precision, recall, F1 and support."""
        table = self.query_one("#eval-classes", DataTable)
        table.clear()
        for row in result.get("per_class") or []:
            table.add_row(row["class"], num(row["precision"], 3), num(row["recall"], 3), num(row["f1"], 3),
                          str(row["support"]))

    def _show_confusion(self, result: dict[str, Any]) -> None:
        """The confusion heatmap and the most confused pairs."""
        matrix = result.get("confusion") or []
        heatmap = self.query_one("#eval-heatmap", Static)
        heatmap.update(confusion_heatmap(matrix, result["classes"]) if matrix else "no confusion matrix")
        table = self.query_one("#eval-confused", DataTable)
        table.clear()
        for pair in result.get("most_confused") or []:
            table.add_row(pair["true"], pair["predicted"], str(pair["count"]))

    def _show_wrong(self, outcome: EvalOutcome) -> None:
        """A grid of the most confidently wrong images with true and predicted labels."""
        grid = self.query_one("#eval-wrong", ItemGrid)
        grid.remove_children()
        count = sum(sum(row) - row[i] for i, row in enumerate(outcome.result.get("confusion") or []))
        shown = len(outcome.pictures)
        title = (f"{count} wrong; the {shown} most confident mistakes (true→predicted, probability)" if shown
                 else "no wrong predictions")
        self.query_one("#eval-wrong-title", Static).update(title)
        grid.mount_all(Vertical(Static(picture, classes="wrong-picture"), Label(caption, classes="wrong-caption"),
                                classes="wrong-cell") for picture, caption in outcome.pictures)

    def _show_members(self, outcome: EvalOutcome) -> None:
        """Each member's own score, the greedy steps and why selection stopped, warnings, notes, paths."""
        result = outcome.result
        rows = result.get("member_metrics") or [{"member": f"{result.get('run')}:{result.get('checkpoint')}",
                                                 "epoch": result.get("epoch"), "accuracy": result["accuracy"],
                                                 "loss": result["loss"]}]
        self.query_one("#eval-members", Static).update(members_table(rows, result["split"]))
        greedy = result.get("greedy")
        for selector in ("#eval-greedy-steps", "#eval-stopped"):
            self.query_one(selector).display = bool(greedy)
        if greedy:
            self.query_one("#eval-greedy-steps", Static).update(greedy_table(greedy))
            self.query_one("#eval-stopped", Static).update(greedy.get("stopped", ""))
        lines = [Text(f"warning: {w}", style="yellow") for w in outcome.warnings]
        lines += [Text(f"note: {n}", style="dim") for n in outcome.notes]
        lines += [Text(f"saved: {self._shown_path(result.get(key))}", style="dim")
                  for key in ("path", "confusion_png") if result.get(key)]
        self.query_one("#eval-notes", Static).update(Text("\n").join(lines))
