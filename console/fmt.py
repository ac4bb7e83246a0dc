"""Number formatting shared by the CLI and the console (no typer or rich import: the app uses it too).

A missing value is always shown as `NO_VALUE` (one definition, in engine.compare, which reports use too).
"""

from __future__ import annotations

import shutil
from typing import Any

from engine.compare import NO_VALUE, plural  # noqa: F401 - re-exported: the CLI's one missing value and plurals


def fmt_pct(value: Any) -> str:
    """0.9731 -> '97.31%'; missing or NaN -> NO_VALUE."""
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) and value == value else NO_VALUE


def fmt_count(value: Any) -> str:
    """1234567 -> '1.23M'; missing -> NO_VALUE."""
    if not isinstance(value, (int, float)):
        return NO_VALUE
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return str(int(value))


def middle_ellipsis(text: str, width: int) -> str:
    """`text` in at most `width` cells by losing its middle (`tiny200-effic…shakedrop-all`): names that share a
    long prefix stay told apart by their ends. Unchanged when it fits, or when `width` leaves too little room."""
    if len(text) <= width or width < 5:
        return text
    keep = width - 1
    return text[: (keep + 1) // 2] + "…" + text[len(text) - keep // 2:]


def fmt_model(preset: Any, architecture: Any) -> str:
    """`small-cnn (convnet)`: the model preset a run started from and its architecture (one when they agree or
    the other is unknown); NO_VALUE when neither is known."""
    preset, architecture = str(preset or ""), str(architecture or "")
    if preset and architecture and preset.rstrip("*") != architecture:
        return f"{preset} ({architecture})"
    return preset or architecture or NO_VALUE


def fmt_bytes(value: int) -> str:
    """123456789 -> '118 MiB'."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def fmt_seconds(value: Any) -> str:
    """83.2 -> '1m23s'; missing -> NO_VALUE."""
    if not isinstance(value, (int, float)):
        return NO_VALUE
    minutes, seconds = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s")


def fmt_num(value: Any, digits: int = 4) -> str:
    """A number with `digits` significant digits; missing -> NO_VALUE."""
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) else NO_VALUE


def fmt_lr(value: Any) -> str:
    """A learning rate in a table column: always in one form (9.56e-05, 1.07e-04), so a column reads down."""
    return f"{value:.2e}" if isinstance(value, (int, float)) else NO_VALUE


def fmt_fixed(value: Any, decimals: int = 4) -> str:
    """A loss or metric with `decimals` decimals (0.0133); missing -> NO_VALUE."""
    return f"{value:.{decimals}f}" if isinstance(value, (int, float)) else NO_VALUE


def fmt_text(value: Any) -> str:
    """Any value as a table cell; None -> NO_VALUE."""
    return NO_VALUE if value is None else str(value)


def terminal_width(explicit: int | None = None) -> int:
    """Columns to lay a table out in: `explicit` (click's terminal_width), $COLUMNS, the terminal, else 200 (piped
    output is not cut to 80 columns)."""
    return explicit or shutil.get_terminal_size((200, 24)).columns
