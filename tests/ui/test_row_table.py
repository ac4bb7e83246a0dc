"""RowTable: a row drawn before DataTable measured it is drawn again at the measured widths."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from console.widgets.row_table import RowTable


class _Table(App[None]):
    CSS = "RowTable { height: 5; }"  # a fixed size, as in Runs: measuring rows never resizes the table

    def compose(self) -> ComposeResult:
        yield RowTable(cursor_type="row", fixed_columns=1)


def test_a_row_drawn_before_it_was_measured_is_drawn_again_at_its_width() -> None:
    async def main() -> None:
        app = _Table()
        async with app.run_test(size=(60, 8)) as pilot:
            table = app.query_one(RowTable)
            table.add_column("id", key="id")
            table.add_column("name", key="name")
            await pilot.pause()
            table.add_row("1", "a-long-run-name-20260101-000000")
            early = table.render_line(1).text  # drawn before the idle pass measured the row (a busy machine)
            assert "a-long-run-name" not in early  # cut to the header's width
            for _ in range(5):
                await pilot.pause()
            assert "a-long-run-name-20260101-000000" in table.render_line(1).text

    asyncio.run(main())
