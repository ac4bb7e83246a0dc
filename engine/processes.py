"""Child processes of this program (`python -m console.cli ...`, `python -m engine.launch`, torchrun's workers)."""

from __future__ import annotations

import os


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child `python -m ...` of this program: PYTHONSAFEPATH keeps the working folder off
    the front of its import path (Python 3.11+), so a user's folder named like one of this project's packages
    (a `presets/` folder of their own, say) never shadows it; `extra` variables added."""
    return {**os.environ, "PYTHONSAFEPATH": "1", **extra}
