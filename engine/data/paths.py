"""Where datasets, downloads and the decoded image-table cache live on disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def data_dir() -> Path:
    """The data folder: `IMGCLS_DATA_DIR`, else the platform's cache folder (no platformdirs needed)."""
    explicit = os.environ.get("IMGCLS_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return default_data_dir()


def default_data_dir() -> Path:
    """The data folder when `IMGCLS_DATA_DIR` is not set: the platform's cache folder."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "imgcls-console" / "Cache" / "data"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "imgcls-console" / "data"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "imgcls-console" / "data"


def offline() -> bool:
    """True when `IMGCLS_OFFLINE` is set: never try to download (tests, air-gapped machines)."""
    return os.environ.get("IMGCLS_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def resolve_under(base: Path, name: str) -> Path:
    """`name` as an absolute path, or relative to `base`, with `~` expanded."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path
