"""What a run was made with: the software, the machine and the code, recorded in its folder.

`collect_environment()` is called by the training process when a run starts or resumes; the run folder keeps
the first record in `environment.json` (`RunFolder.environment`) and every start and resume as an
`environment` event, so a resumed run on another machine says so. Readers (`runs show`, reports, the console)
use `read_environment`, which never raises.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = "imgcls-console"


def collect_environment(device: str | None = None) -> dict[str, Any]:
    """The project version and git commit, Python, torch, torchvision, CUDA/cuDNN, the GPUs and the host."""
    env: dict[str, Any] = {"project": PROJECT, "version": project_version(), **git_commit(),
                           "python": platform.python_version(), "platform": platform.platform(terse=True),
                           "host": socket.gethostname(), "argv": list(sys.argv)}
    env.update(_torch_versions())
    if device is not None:
        env["device"] = device
    return env


def project_version() -> str | None:
    """The installed project's version (None when it is not installed, e.g. run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PROJECT)
    except PackageNotFoundError:
        return None


def git_commit(source: Path | None = None) -> dict[str, Any]:
    """`commit` and `dirty` of the checkout the engine runs from; {} when it is not a git checkout."""
    root = source or Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return {}
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head, "dirty": bool(changed)} if head else {}


def commit_label(source: Path | None = None) -> str:
    """The checkout's short commit, with `+dirty` when it has uncommitted changes; `unknown` outside git."""
    found = git_commit(source)
    return f"{found['commit'][:7]}{'+dirty' if found.get('dirty') else ''}" if found else "unknown"


def _torch_versions() -> dict[str, Any]:
    """torch, torchvision, CUDA, cuDNN and the visible GPUs (names and count)."""
    import torch

    found: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    found["torchvision"] = _torchvision_version()  # importing it would cost seconds per start
    found["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    found["gpu_count"] = count
    found["gpus"] = [torch.cuda.get_device_name(i) for i in range(count)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        found["cuda_visible_devices"] = visible
    return found


def _torchvision_version() -> str | None:
    """torchvision's own `__version__` (with its build tag, e.g. +cu130), read from its version.py without
    importing it (an import costs seconds at every start); the module's when it is already imported."""
    import importlib.util
    import re

    module = sys.modules.get("torchvision")
    if module is not None:
        return str(getattr(module, "__version__", None))
    spec = importlib.util.find_spec("torchvision")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", (Path(folder) / "version.py").read_text(),
                              re.MULTILINE)
        except OSError:
            continue
        if found:
            return found.group(1)
    return None


def write_environment(path: Path, env: dict[str, Any]) -> None:
    """Write the record atomically (a reader never sees half of it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(env, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_environment(path: Path) -> dict[str, Any] | None:
    """The recorded environment, or None when the file is missing or damaged (older runs have none)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_environment(env: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(label, value) rows for people: what ran it, in a fixed order; [] when nothing was recorded."""
    if not env:
        return []
    code = env.get("version") or "not installed"
    if env.get("commit"):
        code += f" (git {str(env['commit'])[:10]}{', uncommitted changes' if env.get('dirty') else ''})"
    gpus = env.get("gpus") or []
    hardware = (f"{len(gpus)} × {gpus[0]}" if gpus and len(set(gpus)) == 1 else ", ".join(map(str, gpus))) or "no GPU"
    cuda = f"CUDA {env['cuda']}, cuDNN {env.get('cudnn') or '—'}" if env.get("cuda") else "CPU build"
    return [("code", f"{env.get('project', PROJECT)} {code}"),
            ("python", str(env.get("python", "—"))),
            ("torch", f"{env.get('torch', '—')} ({cuda}), torchvision {env.get('torchvision') or '—'}"),
            ("hardware", hardware + (f" on {env['device']}" if env.get("device") else "")),
            ("host", str(env.get("host", "—")))]
