"""The help screen: the keys of the screen it was opened from (read from their bindings), then every screen."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

SCREENS = [
    ("F2", "Launch", "compose an experiment from presets, edit the common fields, preview the schedule and data, "
                     "start it"),
    ("F3", "Monitor", "live loss / accuracy / LR charts, epoch table, ETA, device; stop a run gracefully"),
    ("F4", "Runs", "every run and k-fold group; notes and tags; overlay curves, diff configs, resume, fine-tune, "
                   "delete"),
    ("F5", "Evaluate", "checkpoints → accuracy, per-class scores, confusion heatmap, TTA, ensembles"),
    ("F6", "Presets", "browse, view, validate, import and export presets"),
    ("F7", "Sweeps", "each sweep's trials ranked, live, and its best-so-far chart; enter or m opens a trial in Monitor"),
    ("^p", "palette", "any screen's action by what it does; launch an experiment, open a run, preset or sweep by name"),
    ("F1", "help", "this page (escape closes it)"),
    ("^q", "quit", "runs keep training: reopen the app and find them in Runs"),
]
FOOTNOTE = ("Tab and shift+Tab move between fields; enter opens a dropdown or presses a button. Every action "
            "here is also a command (imgcls-console --help) writing the same run folders; runs started here are "
            "child processes in their own session, so closing the app never stops them.")


def screen_bindings(screen: Screen[object]) -> list[Binding]:
    """The bindings (with a description) of `screen` and of the console's own widgets on it, hidden ones
    included, in their declared order."""
    owners: list[type] = [type(screen)]
    for widget in screen.query("*"):
        kind = type(widget)
        if kind.__module__.startswith("console.") and kind not in owners:
            owners.append(kind)
    found = []
    for owner in owners:
        for entry in owner.__dict__.get("BINDINGS", []):
            binding = _as_binding(entry)
            if binding is not None and binding.description:
                found.append(binding)
    return found


def screen_keys(screen: Screen[object]) -> list[tuple[str, str]]:
    """(keys, what) for every binding of `screen` and of the console's own widgets on it, hidden ones included,
    in their declared order; the keys as the footer writes them (`ctrl+r` → `^r`), what as the binding's
    tooltip (the footer shows it on hover), else its description."""
    rows: list[tuple[str, str]] = []
    for binding in screen_bindings(screen):
        keys = " / ".join(screen.app.get_key_display(Binding(key.strip(), binding.action))
                          for key in binding.key.split(","))
        row = (keys, binding.tooltip or binding.description)
        if row not in rows:
            rows.append(row)
    return rows


def _as_binding(entry: BindingType) -> Binding | None:
    if isinstance(entry, Binding):
        return entry
    if isinstance(entry, tuple) and len(entry) >= 2:
        return Binding(*entry)
    return None


def _table(rows: list[tuple[str, ...]]) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1), expand=True)
    for index in range(len(rows[0]) if rows else 0):
        last = index == len(rows[0]) - 1
        table.add_column(style="" if last else "bold", no_wrap=not last, ratio=1 if last else None)
    for row in rows:
        table.add_row(*row)
    return table


def help_page(screen: Screen[object], name: str) -> Group:
    """The help page opened from `screen` (shown as `name`): its keys first, then the screens."""
    parts: list[Any] = [Text("imgcls-console", style="bold")]
    keys = screen_keys(screen)
    if keys:
        parts += [Text(""), Text(f"Keys on {name}", style="bold underline"), _table(keys)]
    parts += [Text(""), Text("Screens", style="bold underline"), _table(SCREENS), Text(""),
              Text(FOOTNOTE, style="dim")]
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    """The current screen's keys, and every screen's, over the current screen."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def __init__(self, page: Group) -> None:
        super().__init__()
        self.page = page

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(self.page, id="help-page")
