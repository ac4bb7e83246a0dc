"""A row-cursor DataTable for lists wider than the screen: the first columns stay put, left/right scroll the
others a whole column at a time (DataTable scrolls one character a press), home/end go to the first/last row."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.widgets import DataTable


class RowTable(DataTable[object]):
    """`fixed_columns` stay in view; left/right bring the previous/next scrolled column to the left edge."""

    BINDINGS = [
        Binding("home", "first_row", "First row", show=False, tooltip="go to the first row"),
        Binding("end", "last_row", "Last row", show=False, tooltip="go to the last row"),
        Binding("right", "column_right", "More columns", show=False,
                tooltip="scroll the table a column to the right"),
        Binding("left", "column_left", "Back", show=False, tooltip="scroll the table a column to the left"),
    ]

    class HiddenColumns(Message):
        """Which sides have columns out of view changed: `sides` is `←`, `→`, `←→` or empty."""

        def __init__(self, sides: str) -> None:
            super().__init__()
            self.sides = sides

    hidden_sides = ""  # the sides last told

    def _tell_hidden_sides(self) -> None:
        sides = "←" * (self.scroll_x > 0) + "→" * (self.scroll_x < self.max_scroll_x)
        if sides != self.hidden_sides:
            self.hidden_sides = sides
            self.post_message(self.HiddenColumns(sides))

    def watch_scroll_x(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_x(old_value, new_value)
        self._tell_hidden_sides()

    def watch_virtual_size(self, size: Size) -> None:
        self.call_after_refresh(self._tell_hidden_sides)  # once laid out at its new width

    def on_resize(self, event: events.Resize) -> None:
        self._tell_hidden_sides()

    _measured: tuple[int, ...] = ()  # the columns' content widths the drawn rows were drawn at

    def on_idle(self, event: events.Idle) -> None:
        """Once DataTable's own idle pass has measured new rows: if a column got wider, drop the rows drawn at
        the old widths. DataTable keeps them (its row cache is keyed without the widths, and measuring does not
        resize a table of fixed size), so a row drawn between `add_row` and the measuring — on a busy machine —
        stayed cut to the headers' widths."""
        measured = tuple(column.content_width for column in self.columns.values())
        if measured != self._measured:
            self._measured = measured
            self._clear_caches()
            self.refresh()

    def _column_edges(self) -> list[int]:
        """The scroll offsets at which each scrolled column starts at the left edge."""
        edges, x = [], 0
        for column in self.ordered_columns[self.fixed_columns:]:
            edges.append(x)
            x += column.get_render_width(self)
        return edges

    def action_column_right(self) -> None:
        target = next((edge for edge in self._column_edges() if edge > self.scroll_x), self.max_scroll_x)
        self.scroll_to(x=min(target, self.max_scroll_x), animate=False)

    def action_column_left(self) -> None:
        target = max((edge for edge in self._column_edges() if edge < self.scroll_x), default=0)
        self.scroll_to(x=target, animate=False)

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)
