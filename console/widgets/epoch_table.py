"""Monitor's epoch table: a header line over fixed-width rows, newest epoch first, scrolled vertically.

A DataTable re-measured and re-rendered every cell each time an epoch came in (~20 ms of the UI thread per
update, and more with every epoch), which a key pressed meanwhile waited for (bench/console_keys.py). This is a
line-API widget: it draws only the lines on screen, each a single text segment (~0.1 ms a line), whatever the
number of epochs. The columns that do not fit the width are left out, least needed first (lr has its own
chart, the epoch time is in the title's ETA).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

# (header, width), in the order shown; dropped from the right when the table is narrower than all of them
COLUMNS = (("ep", 3), ("val acc", 7), ("val loss", 8), ("train acc", 9), ("train loss", 10), ("time", 6),
           ("lr", 8))


class EpochTable(ScrollView, can_focus=True):
    """`show(rows)` with each row's cells in COLUMNS order (text); `row_count` rows shown under the header."""

    COMPONENT_CLASSES = {"epoch-table--header", "epoch-table--stripe"}
    DEFAULT_CSS = """
    EpochTable {
        background: $surface;
        & > .epoch-table--header {
            text-style: bold;
            background: $panel;
        }
        & > .epoch-table--stripe {
            background: $surface-darken-1 40%;
        }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name for it
        super().__init__(id=id)
        self._rows: list[Sequence[str]] = []
        self._lines: dict[int, Strip] = {}  # row index (-1: the header) -> its line at `_width`
        self._width = 0

    @property
    def row_count(self) -> int:
        return len(self._rows)

    def show(self, rows: Sequence[Sequence[str]]) -> None:
        """Show these rows (a new list replaces the old one; only the lines on screen are drawn)."""
        self._rows = list(rows)
        self._lines.clear()
        size = Size(0, len(self._rows) + 1)  # no width: never scrolled sideways (columns that do not fit are left out)
        if self.virtual_size != size:
            self.virtual_size = size  # a layout pass only when the number of rows changed
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()  # the theme changed: the lines' colours with it

    def _columns(self, width: int) -> tuple[tuple[str, int], ...]:
        """The columns that fit `width` (the first two always)."""
        used, count = 0, 0
        for _, column_width in COLUMNS:
            if count >= 2 and used + column_width > width:
                break
            used, count = used + column_width + 1, count + 1
        return COLUMNS[:count]

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if width != self._width:  # resized (lines may be asked for before the Resize event comes)
            self._lines.clear()
            self._width = width
        index = -1 if y == 0 else y - 1 + round(self.scroll_offset.y)  # the header stays on the first line
        if index >= len(self._rows):
            return Strip.blank(width, self.rich_style)
        line = self._lines.get(index)
        if line is None:
            columns = self._columns(width)
            if index < 0:
                text = " ".join(f"{name:>{w}}" for name, w in columns)
                style = self.get_component_rich_style("epoch-table--header")
            else:
                text = " ".join(f"{cell:>{w}}" for cell, (_, w) in zip(self._rows[index], columns))
                style = self.get_component_rich_style("epoch-table--stripe") if index % 2 else Style()
            line = self._lines[index] = Strip([Segment(text.ljust(width)[:width], self.rich_style + style)], width)
        return line
