"""The help screen (F1) lists the keys of the screen it is opened from, read from that screen's bindings."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from rich.console import Console
from textual.binding import Binding
from textual.widgets import Static

from console.app import create_app
from console.screens.help import HelpScreen


def _page_text(screen: HelpScreen) -> str:
    console = Console(width=200, file=io.StringIO())
    console.print(screen.query_one("#help-page", Static).content)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_f1_lists_each_screens_own_keys_with_what_they_do(runs_root: Path) -> None:
    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(80, 24)) as pilot:
            for mode in ("runs", "launch", "monitor", "evaluate", "presets", "sweeps"):
                app.switch_mode(mode)
                await pilot.pause()
                screen = app.screen
                await pilot.press("f1")
                assert isinstance(app.screen, HelpScreen)
                text = _page_text(app.screen)
                assert f"Keys on {mode.capitalize()}" in text
                for binding in type(screen).BINDINGS:
                    assert isinstance(binding, Binding)
                    keys = " / ".join(app.get_key_display(Binding(key, binding.action))
                                      for key in binding.key.split(","))
                    line = next((line for line in text.splitlines() if line.strip().startswith(keys + " ")), "")
                    assert binding.tooltip and " ".join(binding.tooltip.split()[:4]) in line, (mode, keys)
                assert "F4  Runs" in text  # every screen's key too
                await pilot.press("f1")  # F1 again (or escape) closes it
                assert app.screen is screen

            app.switch_mode("evaluate")  # a widget's own keys are listed on its screen's page
            await pilot.press("f1")
            assert "pick or unpick the run, checkpoint or group" in _page_text(app.screen)

    asyncio.run(main())
