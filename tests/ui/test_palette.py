"""The command palette (ctrl+p): screens, help and every screen's actions found by name or by what they do."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.command import CommandList, CommandPalette

from console.app import create_app
from console.screens.help import HelpScreen


async def _until(pilot: Any, condition: Any, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


def _prompts(app: Any) -> list[str]:
    """The palette's hits, as shown."""
    results = app.screen.query_one(CommandList)
    return [str(results.get_option_at_index(i).prompt).split("\n")[0] for i in range(results.option_count)]


async def _search(app: Any, pilot: Any, text: str, wanted: str) -> list[str]:
    """Open the palette, type `text`, wait for the hit `wanted` (it is the first line of a hit's prompt)."""
    await pilot.press("ctrl+p")
    await _until(pilot, lambda: isinstance(app.screen, CommandPalette))
    await pilot.press(*text)
    await _until(pilot, lambda: any(p.startswith(wanted) for p in _prompts(app)))
    return _prompts(app)


def test_actions_are_found_by_their_words_or_what_they_do_and_run_on_their_screen(runs_root: Path) -> None:
    async def main() -> None:
        app = create_app(runs_root, mode="launch")
        async with app.run_test(size=(100, 30)) as pilot:
            hits = await _search(app, pilot, "compare", "Runs: Curves/diff")  # by its tooltip: the comparison
            assert hits[0] == "Runs: Curves/diff", hits
            await pilot.press("escape")
            await _until(pilot, lambda: not isinstance(app.screen, CommandPalette))

            hits = await _search(app, pilot, "help", "Help")
            assert hits[0] == "Help", hits  # the console's page, before Textual's `Keys`
            await pilot.press("enter")
            await _until(pilot, lambda: isinstance(app.screen, HelpScreen))
            await pilot.press("escape")
            await _until(pilot, lambda: not isinstance(app.screen, HelpScreen))

            await _search(app, pilot, "filter runs", "Runs: Filter")
            assert app.current_mode == "launch"
            runs = app.get_screen("runs")
            await pilot.press(*["down"] * _prompts(app).index("Runs: Filter"), "enter")
            await _until(pilot, lambda: app.current_mode == "runs" and runs.query_one("#runs-filter").has_focus)
            await pilot.press("x")  # the action ran there: its filter box has the keys
            assert runs.query_one("#runs-filter").value == "x"

    asyncio.run(main())
