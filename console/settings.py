"""What the console remembers between sessions, per user: its theme and the Runs table's sort order.

One small YAML mapping (safe YAML, written atomically) beside the user presets folder:
`$IMGCLS_CONSOLE_SETTINGS`, else `console.yaml` next to `$IMGCLS_PRESETS_DIR` or
`~/.config/imgcls-console/presets`. A missing, unreadable or damaged file is the defaults (never an error that stops
the app); a value that is not what its key takes is ignored on its own, the others kept. Saving is best-effort: a
read-only home loses the setting, not the session.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {"theme": None, "runs_sort": "started", "runs_sort_descending": True}


def settings_path() -> Path:
    """Where the settings are kept."""
    explicit = os.environ.get("IMGCLS_CONSOLE_SETTINGS")
    if explicit:
        return Path(explicit).expanduser()
    from engine.presets import user_dir

    return user_dir().parent / "console.yaml"


def load_settings(path: Path | None = None) -> dict[str, Any]:
    """The saved settings over the defaults; anything unreadable falls back to its default."""
    settings = dict(DEFAULTS)
    path = path or settings_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return settings
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        log.warning("console settings %s cannot be read (%s); using the defaults", path, exc)
        return settings
    if not isinstance(raw, dict):
        return settings
    for key, default in DEFAULTS.items():
        value = raw.get(key)
        if key == "theme" and isinstance(value, str):
            settings[key] = value
        elif key != "theme" and value is not None and isinstance(value, type(default)):
            settings[key] = value
    return settings


def save_settings(changes: dict[str, Any], path: Path | None = None) -> bool:
    """Merge `changes` into the saved settings (atomically); False (logged) when they cannot be written."""
    from engine.runs import atomic_write_text

    path = path or settings_path()
    settings = {**load_settings(path), **{k: v for k, v in changes.items() if k in DEFAULTS}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "# imgcls-console's console settings (rewritten by the app)\n"
                          + yaml.safe_dump(settings, sort_keys=False))
    except OSError as exc:
        log.warning("console settings %s cannot be written (%s)", path, exc)
        return False
    return True
