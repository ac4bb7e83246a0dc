"""Monitor's epoch table: newest first under a header that stays put, columns that do not fit left out,
scrolled by keyboard, and only a number of rows changed causes a layout pass."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.app import App, ComposeResult

from console.widgets.epoch_table import EpochTable


class _Table(App[None]):
    CSS = "EpochTable { height: 6; }"

    def compose(self) -> ComposeResult:
        yield EpochTable(id="epochs")


def _rows(count: int) -> list[tuple[str, ...]]:
    return [(str(e), f"{90 + e / 10:.2f}%", "0.1234", "91.00%", "0.2345", "1.2s", "0.01") for e in
            range(count, 0, -1)]


def _lines(app: Any) -> list[str]:
    table = app.query_one(EpochTable)
    return [table.render_line(y).text.rstrip() for y in range(table.size.height)]


def test_rows_under_a_fixed_header_scrolled_by_keyboard_columns_that_fit() -> None:
    async def main() -> None:
        app = _Table()
        async with app.run_test(size=(80, 10)) as pilot:
            table = app.query_one(EpochTable)
            table.show(_rows(20))
            await pilot.pause()
            lines = _lines(app)
            assert lines[0].split() == ["ep", "val", "acc", "val", "loss", "train", "acc", "train", "loss", "time",
                                        "lr"]
            assert lines[1].split()[:2] == ["20", "92.00%"] and lines[5].split()[0] == "16"
            assert table.row_count == 20
            table.focus()
            await pilot.press("end")
            lines = _lines(app)
            assert lines[0].split()[0] == "ep" and lines[-1].split()[0] == "1"  # the header stayed
            await pilot.resize_terminal(30, 10)  # narrow: ep, val acc, val loss only
            await pilot.pause()
            assert _lines(app)[0].split() == ["ep", "val", "acc", "val", "loss"]

    asyncio.run(main())


def test_new_values_for_the_same_rows_repaint_without_a_layout_pass() -> None:
    async def main() -> None:
        app = _Table()
        async with app.run_test(size=(80, 10)) as pilot:
            table = app.query_one(EpochTable)
            table.show(_rows(3))
            await pilot.pause()
            size = table.virtual_size
            table.show([("3", "99.99%", *row[2:]) if row[0] == "3" else row for row in _rows(3)])
            assert table.virtual_size == size  # unchanged: no layout requested
            await pilot.pause()
            assert "99.99%" in _lines(app)[1]
            table.show(_rows(4))
            assert table.virtual_size.height == size.height + 1

    asyncio.run(main())
