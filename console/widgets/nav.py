"""The top bar of every screen: the app's name and its screens, the current one highlighted, each clickable."""

from __future__ import annotations

from textual.widgets import Static

SCREEN_KEYS = (("F2", "launch", "Launch"), ("F3", "monitor", "Monitor"), ("F4", "runs", "Runs"),
               ("F5", "evaluate", "Evaluate"), ("F6", "presets", "Presets"), ("F7", "sweeps", "Sweeps"))
WIDE_NAME, SHORT_NAME = "imgcls-console", "imgcls"  # the short one where the whole bar would pass 80 columns


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

    def on_resize(self) -> None:
        """The app's name shortens on a narrow terminal, so every screen key stays visible."""
        self.update(self._markup())

    def _current(self) -> str:
        """The mode of the screen this bar is on (`MonitorScreen` -> `monitor`)."""
        return type(self.screen).__name__.removesuffix("Screen").lower()

    def _markup(self) -> str:
        current = self._current()
        keys_width = sum(len(f" {key} {label}") for key, _, label in SCREEN_KEYS) + len(" F1 Help")
        name = WIDE_NAME if len(WIDE_NAME) + keys_width <= self.size.width else SHORT_NAME  # 76 columns short
        parts = [f"[b $accent]{name}[/]"]
        for key, mode, label in SCREEN_KEYS:
            if mode == current:
                parts.append(f" [reverse b]{key} {label}[/]")
            else:
                parts.append(f" [@click=app.switch_mode('{mode}')]{key} {label}[/]")
        parts.append(" [@click=app.help]F1 Help[/]")
        return "".join(parts)
