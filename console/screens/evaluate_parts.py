"""Pieces of the Evaluate screen: the run/checkpoint catalog, the checkbox tree, the confusion heatmap and the
members' and greedy steps' tables (the evaluation itself runs in the compute process: console/evaluation.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.color import Color
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from console.fmt import middle_ellipsis, plural
from console.evaluation import short as _short

PICKED_MARK, UNPICKED_MARK = "●", "○"
ALL_CHECKPOINTS = "all"  # `RUN:all` (engine.members.ALL_CHECKPOINTS; that module imports torch)
# viridis stops: dark for 0, yellow for 1; readable on dark and light themes
HEAT_STOPS = [(0.0, (38, 16, 60)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)),
              (1.0, (253, 231, 37))]


# ---------------------------------------------------------------- catalog


@dataclass(frozen=True)
class CatalogRun:
    """A run as the picker lists it: its reference name and saved checkpoints (name, epoch)."""

    name: str
    state: str
    model: str
    checkpoints: list[tuple[str, int]]


@dataclass(frozen=True)
class CatalogGroup:
    """A k-fold group and its fold runs."""

    name: str
    folds: list[CatalogRun]


def load_catalog(root: Path) -> tuple[list[CatalogRun], list[CatalogGroup]]:
    """Runs outside groups, and k-fold groups with their folds, each with its checkpoints (torch-free)."""
    from engine.kfold import list_groups
    from engine.runs import list_runs, saved_checkpoints

    runs = [CatalogRun(r.name, r.state, r.model, saved_checkpoints(r.path)) for r in list_runs(root)]
    groups = []
    for group in list_groups(root):
        inside = group.name + "/"
        groups.append(CatalogGroup(group.name, [r for r in runs if r.name.startswith(inside)]))
    grouped = {r.name for g in groups for r in g.folds}
    return [r for r in reversed(runs) if r.name not in grouped], list(reversed(groups))  # newest first


class CheckpointTree(Tree[str]):
    """Runs and k-fold groups expandable to their checkpoints; space picks the reference under the cursor."""

    DEFAULT_CSS = """
    CheckpointTree { height: 1fr; }
    """
    BINDINGS = [Binding("space", "toggle_pick", "Pick",
                        tooltip="pick or unpick the run, checkpoint or group under the cursor and move down")]

    class Toggled(Message):
        """Space was pressed on a node: pick or unpick its reference."""

        def __init__(self, ref: str) -> None:
            super().__init__()
            self.ref = ref

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("checkpoints", **kwargs)
        self.show_root = False
        self.guide_depth = 2
        self.texts: dict[int, str] = {}  # node id -> label without its mark

    def show_catalog(self, runs: list[CatalogRun], groups: list[CatalogGroup], picked: list[str]) -> None:
        """Rebuild the tree (expanded nodes stay expanded) and mark the picked references."""
        expanded = {n.data for n in self._all_nodes() if n.is_expanded}
        cursor = max(0, self.cursor_line)
        self.clear()
        self.texts.clear()
        for group in groups:
            node = self._add(self.root, group.name, f"{group.name}/ ({len(group.folds)} folds)")
            for run in group.folds:
                self._add_run(node, run)
        for run in runs:
            self._add_run(self.root, run)
        for node in self._all_nodes():
            if node.data in expanded or any(p.startswith(f"{node.data}:") for p in picked):
                node.expand()
        self.mark(picked)
        self.cursor_line = cursor  # the same line again (the first one at the start), so space works at once

    def _add_run(self, parent: TreeNode[str], run: CatalogRun) -> None:
        """A run node with an `all` entry (when several) and one leaf per checkpoint."""
        short = run.name.rpartition("/")[2] if parent is not self.root else run.name
        node = self._add(parent, run.name, f"{short} ({run.state})" if run.state != "finished" else short)
        if not run.checkpoints:
            node.add_leaf(Text("no checkpoints", style="dim"))
            return
        if len(run.checkpoints) > 1:
            self._add(node, f"{run.name}:{ALL_CHECKPOINTS}", "all checkpoints", leaf=True)
        for name, epoch in run.checkpoints:
            self._add(node, f"{run.name}:{name}", f"{name} (epoch {epoch})" if not name.startswith("epoch-")
                      else name, leaf=True)

    def _add(self, parent: TreeNode[str], ref: str, text: str, *, leaf: bool = False) -> TreeNode[str]:
        """A node whose data is the reference it picks."""
        node = parent.add_leaf(text, data=ref) if leaf else parent.add(text, data=ref)
        self.texts[node.id] = text
        return node

    def _all_nodes(self) -> list[TreeNode[str]]:
        """Every node below the root."""
        found, stack = [], list(self.root.children)
        while stack:
            node = stack.pop()
            found.append(node)
            stack.extend(node.children)
        return found

    def known_refs(self) -> set[str]:
        """The references the tree lists (others, such as a run's prefix or folder, are picked but not shown)."""
        return {str(node.data) for node in self._all_nodes() if node.data is not None}

    def mark(self, picked: list[str]) -> None:
        """Show which nodes' references are picked; a run picked as a whole names the checkpoint that stands for
        it (best, else last, as the engine resolves `RUN`), which is marked too."""
        chosen = set(picked)
        implied = {}  # the checkpoint node a picked run stands for -> that run's node
        for node in self._all_nodes():
            if node.data in chosen and ":" not in str(node.data):
                refs = {str(child.data).rpartition(":")[2]: child for child in node.children if child.data}
                default = refs.get("best") or refs.get("last")
                if default is not None:
                    implied[default.id] = node
        for node in self._all_nodes():
            if node.id not in self.texts:
                continue
            picked_here = node.data in chosen
            text, suffix = self.texts[node.id], ""
            if picked_here and any(owner is node for owner in implied.values()):
                default = next(child for child in node.children if child.id in implied)
                suffix = f" → {str(default.data).rpartition(':')[2]}"
            depth, parent = 0, node.parent
            while parent is not None and parent is not self.root:
                depth, parent = depth + 1, parent.parent
            room = self.scrollable_content_region.width - 4 * (depth + 1) - 2 - len(suffix)  # guides, mark
            text = (middle_ellipsis(text, room) if room > 0 else text) + suffix  # `→ best` stays in view
            included = picked_here or node.id in implied
            node.set_label(Text.assemble((PICKED_MARK if included else UNPICKED_MARK, "bold" if included else "dim"),
                                         " ", (text, "bold" if picked_here else "")))

    def reveal(self, picked: list[str]) -> None:
        """Put the cursor on the first picked node in the tree's order, scrolled into view (once the rebuilt tree
        has been laid out: lines are numbered then)."""
        chosen, stack = set(picked), list(reversed(self.root.children))
        while stack:
            node = stack.pop()
            if node.data in chosen:
                self.call_after_refresh(self.move_cursor, node)
                return
            stack.extend(reversed(node.children))

    def action_toggle_pick(self) -> None:
        """Space: ask the screen to pick or unpick the reference under the cursor, and move down (as in Runs: a
        few presses pick a few runs)."""
        node = self.cursor_node
        if node is not None and node.data is not None:
            self.post_message(self.Toggled(node.data))
            self.action_cursor_down()


# ---------------------------------------------------------------- rendering


def _heat_colour(value: float) -> Color:
    """The heatmap colour of a row-normalised value in [0, 1] (linear between the viridis stops)."""
    value = min(1.0, max(0.0, value))
    for (low, a), (high, b) in zip(HEAT_STOPS, HEAT_STOPS[1:]):
        if value <= high:
            t = (value - low) / (high - low)
            return Color.from_rgb(*(a[i] + (b[i] - a[i]) * t for i in range(3)))
    return Color.from_rgb(*HEAT_STOPS[-1][1])


def confusion_heatmap(matrix: list[list[int]], classes: list[str]) -> Table:
    """The confusion matrix as a table of counts on backgrounds scaled by the row-normalised value (row = true
    class, column = predicted)."""
    label_width = min(10, max(len(c) for c in classes))
    cell_width = max(3, len(str(max((max(row) for row in matrix), default=0))), min(4, label_width))
    table = Table(box=None, padding=0, pad_edge=False, show_edge=False, collapse_padding=True,
                  title="true ↓  predicted →", title_style="dim", title_justify="left")
    table.add_column("", justify="right", no_wrap=True, width=label_width + 1)
    for name in classes:
        table.add_column(_short(name, cell_width), justify="center", no_wrap=True, width=cell_width + 1)
    for name, row in zip(classes, matrix):
        total = sum(row) or 1
        cells = []
        for count in row:
            share = count / total
            background = _heat_colour(share)
            light = sum(background.get_truecolor()) > 380
            cells.append(Text(str(count) if count else "·", justify="center",
                              style=Style(bgcolor=background, color="black" if light else "white")))
        table.add_row(Text(_short(name, label_width) + " ", style="bold"), *cells)
    return table


def pct(value: Any) -> str:
    """0.9731 -> '97.31%'; missing -> '-' (as the CLI prints it)."""
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "-"


def num(value: Any, digits: int = 4) -> str:
    """A number with `digits` decimals; missing -> '-'."""
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def members_table(rows: list[dict[str, Any]], split: str) -> Table:
    """Each member's own score (long names wrap instead of being cut)."""
    table = Table(title=f"members (each alone on {split})", title_justify="left", title_style="bold",
                  box=None, header_style="bold", expand=False)
    for name in ("accuracy", "loss", "epoch"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("member", overflow="fold")
    for row in rows:
        table.add_row(pct(row["accuracy"]), num(row["loss"]), str(row.get("epoch", "-")), row["member"])
    return table


def greedy_table(greedy: dict[str, Any]) -> Table:
    """The greedy selection: the member added at each step and the ensemble's score after it."""
    table = Table(title=f"greedy selection on {greedy['split']} "
                      f"({plural(len(greedy['candidates']), 'candidate')})",
                  title_justify="left", title_style="bold", box=None, header_style="bold")
    for name in ("step", f"{greedy['split']} acc", f"{greedy['split']} loss"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("added", overflow="fold")
    for index, step in enumerate(greedy.get("trace", []), 1):
        table.add_row(str(index), pct(step["accuracy"]), num(step["loss"]), step["added"])
    return table
