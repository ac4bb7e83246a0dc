"""The top bar of every screen: the app's name and its screens, the current one highlighted, each clickable."""

from __future__ import annotations

from textual.widgets import Static

SCREEN_KEYS = (("F2", "launch", "Launch"), ("F3", "monitor", "Monitor"), ("F4", "runs", "Runs"),
               ("F5", "evaluate", "Evaluate"), ("F6", "presets", "Presets"))


class NavBar(Static):
    """`imgcls-console  F2 Launch  F3 Monitor …  F1 Help`: where you are and how to go elsewhere."""

    DEFAULT_CSS = """
    NavBar {
        dock: top;
        height: 1;
        width: 1fr;
        background: $panel;
        color: $text;
    }
    """

    def on_mount(self) -> None:
        self.update(self._markup())

    def _current(self) -> str:
        """The mode of the screen this bar is on (`MonitorScreen` -> `monitor`)."""
        return type(self.screen).__name__.removesuffix("Screen").lower()

    def _markup(self) -> str:
        current = self._current()
        parts = ["[b $accent]imgcls-console[/]"]
        for key, mode, label in SCREEN_KEYS:  # 74 columns in all: fits an 80-column terminal
            if mode == current:
                parts.append(f" [reverse b]{key} {label}[/]")
            else:
                parts.append(f" [@click=app.switch_mode('{mode}')]{key} {label}[/]")
        parts.append(" [@click=app.help]F1 Help[/]")
        return "".join(parts)
