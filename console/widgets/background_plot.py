"""A plotext chart whose figure is built in a thread worker, off the UI thread.

Building a plotext figure, decoding its ANSI text and cutting it into lines takes ~10 ms a chart on a 2-core
machine; done in `render()` (as `PlotextPlot` does it) a key pressed meanwhile waits for every chart of the
frame. Here the screen hands `draw()` a function of a data snapshot; a worker runs it on the chart's own
plotext object at the widget's size and theme, and renders the text to lines; the widget shows the last lines
built. The UI thread never touches `plt`: the function is run again (in a worker) when the widget is resized
or the theme changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.text import Text
from textual import work
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip
from textual.worker import get_current_worker
from textual_plotext import PlotextPlot

from console.widgets.chart_axes import round_y_axis

HIDDEN_SIZE = Size(40, 10)  # what a chart not on screen yet is built at (its figure is ready; a resize redraws)
Draw = Callable[[Any], None]  # draws a whole figure on a plotext `plt` (starting with plt.clear_figure())


class BackgroundPlot(PlotextPlot):
    """A `PlotextPlot` drawn with `draw(fn)`; `pending` while the latest drawing is not shown yet."""

    class Built(Message):
        """A figure built by the worker, for the request `key` (generation, size, theme)."""

        def __init__(self, key: tuple[int, Size, str], text: Text, lines: list[Strip]) -> None:
            super().__init__()
            self.key, self.text, self.lines = key, text, lines

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._draw: Draw | None = None
        self._generation = 0  # bumped by each draw()
        self._requested: tuple[int, Size, str] | None = None  # the last build asked for
        self._shown: tuple[int, Size, str] | None = None  # the build render() shows
        self._text = Text()
        self._lines: list[Strip] = []
        self._lock = threading.Lock()  # one build at a time on this chart's plotext object

    @property
    def pending(self) -> bool:
        """A drawing (or a size or theme change) is not on screen yet."""
        return self._draw is not None and self._shown != self._key()

    def draw(self, fn: Draw) -> None:
        """Draw the figure `fn(plt)` (called in a worker: it must use only data it was given, never live state)."""
        self._draw = fn
        self._generation += 1
        self._request()

    def _key(self) -> tuple[int, Size, str]:
        return (self._generation, self.size, self._get_plotext_theme_name(self.app.theme))

    def _request(self) -> None:
        key = self._key()
        if self._draw is None or key == self._requested:
            return
        self._requested = key
        self._build(self._draw, key)

    # A fixed description: by default Textual describes a worker by the repr of its arguments (here, every point).
    @work(thread=True, exclusive=True, exit_on_error=False, group="plot", description="build a chart")
    def _build(self, fn: Draw, key: tuple[int, Size, str]) -> None:
        with self._lock:
            if get_current_worker().is_cancelled:  # a newer request came while the previous build ran
                return
            _, size, theme = key
            if not size.area:  # not laid out (a hidden tab): drawn at a nominal size, again when shown
                size = HIDDEN_SIZE
            plt = self.plt
            try:
                fn(plt)
                plt.plotsize(size.width, size.height)
                plt._set_size(size.width, size.height)  # as PlotextPlot.render does (textual-plotext issue 5)
                round_y_axis(plt, size.height)
                plt.theme(theme)
                text = Text.from_ansi(plt.build())
            except Exception as exc:  # noqa: BLE001 - a figure plotext cannot draw: say so in its place
                text = Text(f"chart not drawn: {exc}", style="red")
        console = Console(width=size.width, height=size.height, color_system="truecolor", force_terminal=True)
        lines = [Strip(line, size.width) for line in console.render_lines(text, pad=True, new_lines=False)]
        self.post_message(self.Built(key, text, lines))

    def on_background_plot_built(self, message: Built) -> None:
        message.stop()
        # Any build newer than the one shown is shown, even if a newer one was asked for meanwhile: on a busy
        # machine, builds slower than the data arrives would otherwise never show anything (`pending` stays true
        # until the latest is shown). An older build never replaces a newer one.
        if self._shown is None or message.key[0] >= self._shown[0]:
            self._shown, self._text, self._lines = message.key, message.text, message.lines
            self.refresh()

    def on_resize(self) -> None:
        self._request()

    def render(self) -> Text:
        """The last figure built, as text."""
        return self._text

    def render_line(self, y: int) -> Strip:
        """A line of the last figure built (drawn for the size it was built at until the new one comes)."""
        if y == 0:
            self._request()  # the theme changed (PlotextPlot refreshes then): rebuilt, the old lines shown meanwhile
        if y < len(self._lines):
            return self._lines[y]
        return Strip.blank(self.size.width, self.rich_style)
