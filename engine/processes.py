"""Child processes of this program (`python -m console.cli ...`, `python -m engine.launch`, torchrun's workers)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from engine.errors import ConfigError


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child `python -m ...` of this program: PYTHONSAFEPATH keeps the working folder off
    the front of its import path (Python 3.11+), so a user's folder named like one of this project's packages
    (a `presets/` folder of their own, say) never shadows it; `extra` variables added."""
    return {**os.environ, "PYTHONSAFEPATH": "1", **extra}


def safe_python() -> list[str]:
    """This Python, with the working folder kept off the front of its import path where Python can (-P, 3.11+):
    the command start for a child that inherits a user's working folder (see `child_env`)."""
    return [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else [])]


def slurm_executor(submitit: Any, folder: Path, cluster: str) -> Any:
    """submitit's executor for `cluster` (slurm or local); no Slurm on this machine is a ConfigError saying what
    to do, not submitit's traceback."""
    try:
        return submitit.AutoExecutor(folder=folder, cluster=cluster)
    except RuntimeError as exc:
        if cluster == "slurm" and "srun" in str(exc):
            raise ConfigError("no Slurm on this machine (srun not found): submit from the cluster's login node, or "
                              "try the job here with --cluster local --wait") from None
        raise


def exit_now(code: int) -> None:
    """End this process with `code` without the interpreter's teardown (streams flushed first): tearing down
    torch's modules takes seconds, and under torchrun gloo's threads being destroyed aborted finished ranks."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
