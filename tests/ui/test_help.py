"""The help screen (F1) lists the keys of the screen it is opened from, read from that screen's bindings."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from rich.console import Console
from textual.binding import Binding
from textual.widgets import Static

from console.app import ConsoleApp, create_app
from console.screens.help import HelpScreen, screen_keys


def _page_text(screen: HelpScreen) -> str:
    console = Console(width=200, file=io.StringIO())
    console.print(screen.query_one("#help-page", Static).content)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_f1_lists_each_screens_own_keys_with_what_they_do(runs_root: Path) -> None:
    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(80, 24)) as pilot:
            runs = app.screen
            await pilot.press("f1")
            assert isinstance(app.screen, HelpScreen)
            text = _page_text(app.screen)
            assert "Keys on Runs" in text and "F4  Runs" in text  # this screen's keys, then every screen's
            assert "select or unselect the run and move down" in text  # what a key does, not only its name
            await pilot.press("f1")  # F1 again (or escape) closes it
            assert app.screen is runs

            for mode, make in ConsoleApp.SCREENS.items():  # every binding of every screen is on its page
                screen = make()
                listed = dict(screen_keys(screen))
                for binding in type(screen).BINDINGS:
                    assert isinstance(binding, Binding) and binding.tooltip, (mode, binding)
                    keys = " / ".join(app.get_key_display(Binding(key, binding.action))
                                      for key in binding.key.split(","))
                    assert listed.get(keys) == binding.tooltip, (mode, keys)

            app.switch_mode("evaluate")  # a widget's own keys are listed on its screen's page
            await pilot.press("f1")
            assert "pick or unpick the run, checkpoint or group" in _page_text(app.screen)

    asyncio.run(main())
