"""Number formatting shared by the CLI and the console (no typer or rich import: the app uses it too)."""

from __future__ import annotations

from typing import Any


def fmt_pct(value: Any) -> str:
    """0.9731 -> '97.31%'; missing or NaN -> '-'."""
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) and value == value else "-"


def fmt_count(value: Any) -> str:
    """1234567 -> '1.23M'; missing -> '-'."""
    if not isinstance(value, (int, float)):
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return str(int(value))


def fmt_bytes(value: int) -> str:
    """123456789 -> '118 MiB'."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def fmt_seconds(value: Any) -> str:
    """83.2 -> '1m23s'."""
    if not isinstance(value, (int, float)):
        return "-"
    minutes, seconds = divmod(int(round(value)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s")


def fmt_num(value: Any, digits: int = 4) -> str:
    """A number with `digits` significant digits; missing -> '-'."""
    return f"{value:.{digits}g}" if isinstance(value, (int, float)) else "-"
