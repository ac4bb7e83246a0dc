"""The run directory: create, list, read and find runs.

A run folder holds `config.yaml` (fully resolved), `events.jsonl` (append-only), `status.json` (replaced
atomically), `checkpoints/`, `evals/` and `plots/`. It is the only state shared between a training process
and any viewer.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import config as cfg
from engine.errors import RunError, did_you_mean
from engine.events import read_events

STATES = ("running", "finished", "failed", "interrupted", "diverged")


def runs_dir(explicit: str | Path | None = None) -> Path:
    """The runs folder: explicit, else `IMGCLS_RUNS_DIR`, else `./runs`."""
    return Path(explicit or os.environ.get("IMGCLS_RUNS_DIR") or "runs").expanduser()


def safe_name(name: str) -> str:
    """A folder-safe form of a user-given name: no separators, no dots in front, bounded length."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "run"
    return cleaned[:80]


def create_run(root: Path, name: str) -> Path:
    """Make a new run folder `<name>-<YYYYmmdd-HHMMSS>[-n]` inside `root` (never outside it)."""
    if root.exists() and not root.is_dir():
        raise RunError(f"runs folder {root} is a file, not a folder; pass another --runs-dir")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"runs folder {root} cannot be created: {exc.strerror or exc}") from None
    stem = f"{safe_name(name)}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1000):
        candidate = root / (stem if n == 0 else f"{stem}-{n}")
        if candidate.resolve().parent != root.resolve():
            raise RunError(f"run name {name!r} would escape the runs folder {root}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        (candidate / "checkpoints").mkdir()
        return candidate
    raise RunError(f"too many runs named {stem} in {root}")


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so readers see the old or the new content, never a torn one (tmp, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_status(run_dir: Path, status: dict[str, Any]) -> None:
    """Replace `status.json` atomically (strict JSON: NaN/Inf written as strings)."""
    from engine.events import strict_json

    atomic_write_text(run_dir / "status.json", json.dumps(strict_json(status), indent=2, sort_keys=True) + "\n")


def write_config(run_dir: Path, config: cfg.ExperimentConfig) -> None:
    """Write the fully resolved `config.yaml` (re-runnable with `train`)."""
    from engine.presets import resolved_yaml

    atomic_write_text(run_dir / "config.yaml", resolved_yaml(config))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's status; a `running` run whose process is gone (same host) reads as `interrupted`."""
    try:
        status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"state": "unknown"}
    except json.JSONDecodeError as exc:
        raise RunError(f"{run_dir / 'status.json'}: not valid JSON ({exc})") from exc
    if status.get("state") == "running" and status.get("host") == socket.gethostname():
        pid = status.get("pid")
        if isinstance(pid, int) and not _pid_alive(pid):
            status["state"] = "interrupted"
            status["reason"] = "process gone without a final status (killed?)"
    return status


def read_config(run_dir: Path) -> cfg.ExperimentConfig:
    """The run's resolved config."""
    from engine.presets import load_mapping

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise RunError(f"{run_dir} has no config.yaml: is it a run folder?")
    return cfg.from_dict(load_mapping(path), str(path))


@dataclass
class RunInfo:
    """What `runs list` shows of a run."""

    name: str
    path: Path
    status: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    model: str = ""

    @property
    def state(self) -> str:
        return str(self.status.get("state", "unknown"))


def is_run_dir(path: Path) -> bool:
    """A folder is a run when it holds a status.json or config.yaml."""
    return path.is_dir() and ((path / "status.json").is_file() or (path / "config.yaml").is_file())


def list_runs(root: Path) -> list[RunInfo]:
    """All runs in the runs folder (k-fold groups included, one level down), oldest first."""
    if not root.is_dir():
        return []
    candidates: list[Path] = []
    for child in sorted(root.iterdir()):
        if is_run_dir(child):
            candidates.append(child)
        elif child.is_dir():
            candidates.extend(sorted(p for p in child.iterdir() if is_run_dir(p)))
    runs = []
    for path in candidates:
        status = read_status(path)
        runs.append(RunInfo(str(path.relative_to(root)), path, status,
                            str(status.get("data", "")), str(status.get("model", ""))))
    runs.sort(key=lambda r: (r.status.get("started", 0), r.name))
    return runs


def resolve_run(root: Path, name: str) -> Path:
    """Find a run by folder path, exact name, or unique prefix; errors list close names."""
    direct = Path(name).expanduser()
    if is_run_dir(direct):
        return direct
    names = [r.name for r in list_runs(root)]
    if name in names:
        return root / name
    matches = [n for n in names if n.startswith(name) or Path(n).name.startswith(name)]
    if len(matches) == 1:
        return root / matches[0]
    if len(matches) > 1:
        raise RunError(f"{name!r} matches several runs: {', '.join(matches[:8])}")
    if name == "latest" and names:
        return list_runs(root)[-1].path
    raise RunError(f"no run {name!r} in {root}{did_you_mean(name, names)}")


def epoch_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch metrics of a run (the last record of each epoch wins, so a resumed run reads cleanly)."""
    rows: dict[int, dict[str, Any]] = {}
    for event in read_events(run_dir / "events.jsonl", {"epoch"}):
        rows[int(event["epoch"])] = event
    return [rows[k] for k in sorted(rows)]
