"""Widgets shared by the console's screens (each keeps its own DEFAULT_CSS)."""
