"""The run directory: its layout, and creating, listing, reading and finding runs.

A run folder holds `config.yaml` (fully resolved), `events.jsonl` (append-only), `status.json` (replaced
atomically), `checkpoints/`, `evals/`, `plots/`, `environment.json` (what the run was made with, written by
engine.provenance), `notes.json` (note and tags), `output.log` (what a launched training process printed) and,
while a graceful stop is pending, `stop-request`. It is the only state shared
between a training process and any viewer; this module is the only one that spells those names
(`RunFolder`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import config as cfg
from engine.errors import RunError, did_you_mean
from engine.events import read_events

log = logging.getLogger(__name__)

STATES = ("starting", "running", "finished", "failed", "interrupted", "diverged")
FINAL_STATES = ("finished", "failed", "interrupted", "diverged")


@dataclass(frozen=True)
class RunFolder:
    """The layout of one run folder: every file and folder a run holds, by name."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def events(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def status(self) -> Path:
        return self.path / "status.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def evals(self) -> Path:
        return self.path / "evals"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def environment(self) -> Path:
        return self.path / "environment.json"

    @property
    def notes(self) -> Path:
        return self.path / "notes.json"

    @property
    def output_log(self) -> Path:
        return self.path / "output.log"

    @property
    def stop_request(self) -> Path:
        return self.path / "stop-request"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"


def runs_dir(explicit: str | Path | None = None) -> Path:
    """The runs folder: explicit, else `IMGCLS_RUNS_DIR`, else `./runs`."""
    return Path(explicit or os.environ.get("IMGCLS_RUNS_DIR") or "runs").expanduser()


def safe_name(name: str) -> str:
    """A folder-safe form of a user-given name: no separators, no dots in front, bounded length."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "run"
    return cleaned[:80]


def ensure_folder(folder: Path, what: str = "runs folder", hint: str = "pass another --runs-dir") -> Path:
    """`folder`, made with its parents when missing; a file in the way (it, or a folder above it) or a folder
    that cannot be made is one RunError naming it, said before any work that would write there."""
    folder = Path(folder)
    blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        inside = "" if blocker == folder else f" (needed as a folder for {folder})"
        raise RunError(f"{what} {blocker} is a file, not a folder{inside}; {hint}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{what} {folder} cannot be created: {exc.strerror or exc}; {hint}") from None
    return folder


def new_folder(root: Path, stem: str, what: str = "runs") -> Path:
    """Make a new folder `<stem>[-n]` inside `root` (never outside it); the first free name wins."""
    ensure_folder(root)
    for n in range(1000):
        candidate = root / (stem if n == 0 else f"{stem}-{n}")
        if candidate.resolve().parent != root.resolve():
            raise RunError(f"name {stem!r} would escape the runs folder {root}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RunError(f"too many {what} named {stem} in {root}")


def create_run(root: Path, name: str) -> Path:
    """Make a new run folder `<name>-<YYYYmmdd-HHMMSS>[-n]` inside `root` (never outside it)."""
    folder = new_folder(root, f"{safe_name(name)}-{time.strftime('%Y%m%d-%H%M%S')}")
    RunFolder(folder).checkpoints.mkdir()
    return folder


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so readers see the old or the new content, never a torn one (tmp, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")  # per writer thread
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_status(run_dir: Path, status: dict[str, Any]) -> None:
    """Replace `status.json` atomically (strict JSON: NaN/Inf written as strings)."""
    from engine.events import strict_json

    atomic_write_text(RunFolder(run_dir).status, json.dumps(strict_json(status), indent=2, sort_keys=True) + "\n")


def write_config(run_dir: Path, config: cfg.ExperimentConfig) -> None:
    """Write the fully resolved `config.yaml` (re-runnable with `train`)."""
    from engine.presets import resolved_yaml

    atomic_write_text(RunFolder(run_dir).config, resolved_yaml(config))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's status; a `running` run whose process is gone (same host) reads as `interrupted`. A damaged
    status.json reads as state `unknown` with the reason: it is a summary the training process rewrites, and the
    run's config, events and checkpoints are intact, so showing, evaluating and resuming the run go on (a second
    writer is kept out by the run's lock, not by its status)."""
    path = RunFolder(run_dir).status
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return {"state": "unknown"}
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        return {"state": "unknown", "reason": f"{path}: not valid JSON ({exc})", "damaged": True}
    if not isinstance(status, dict):
        return {"state": "unknown", "reason": f"{path}: not a status record (a JSON object)", "damaged": True}
    if status.get("state") in ("running", "starting") and status.get("host") == socket.gethostname():
        pid = status.get("pid")
        if isinstance(pid, int) and not _pid_alive(pid):
            status["state"] = "interrupted"
            status["reason"] = "process gone without a final status (killed?)"
            status["process_gone"] = True
    return status


def read_config(run_dir: Path) -> cfg.ExperimentConfig:
    """The run's resolved config."""
    from engine.presets import load_mapping

    path = RunFolder(run_dir).config
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

    @property
    def model_label(self) -> str:
        """The model preset the run started from (`name*`: with values changed), else its architecture."""
        return str(self.status.get("model_preset") or self.model)


def is_run_dir(path: Path) -> bool:
    """A folder is a run when it holds a status.json or config.yaml."""
    folder = RunFolder(path)
    return path.is_dir() and (folder.status.is_file() or folder.config.is_file())


def list_runs(root: Path) -> list[RunInfo]:
    """All runs in the runs folder (k-fold groups included, one level down), oldest first."""
    if not root.is_dir():
        return []
    candidates: list[Path] = []
    for child in sorted(root.iterdir()):
        try:
            if is_run_dir(child):
                candidates.append(child)
            elif child.is_dir():
                candidates.extend(sorted(p for p in child.iterdir() if is_run_dir(p)))
        except OSError:  # deleted or unreadable while listed
            continue
    runs = []
    for path in candidates:
        try:
            status = read_status(path)
        except (RunError, OSError) as exc:  # a damaged status is shown as such, never stops the listing
            status = {"state": "unknown", "reason": str(exc)}
        runs.append(RunInfo(str(path.relative_to(root)), path, status,
                            str(status.get("data", "")), str(status.get("model", ""))))
    runs.sort(key=lambda r: (_started(r.status), r.name))
    return runs


def _started(status: dict[str, Any]) -> float:
    value = status.get("started", 0)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


STAMPED = re.compile(r"(?P<short>.+)-\d{8}-\d{6}(?:-\d{1,3})?")  # <name>-<YYYYmmdd-HHMMSS>[-n], see create_run


def short_name(folder_name: str) -> str:
    """A run or k-fold group folder's name without its date stamp: the name it was started with."""
    match = STAMPED.fullmatch(Path(folder_name).name)
    return match.group("short") if match else Path(folder_name).name


def newest_named(folders: list[Path], name: str, what: str = "runs") -> Path:
    """The newest of `folders` (oldest first), all of short name `name`; says which when there is a choice."""
    if len(folders) > 1:
        log.info("%s: %s (the newest of %d %s of that name)", name, folders[-1].name, len(folders), what)
    return folders[-1]


def resolve_run(root: Path, name: str) -> Path:
    """Find a run by folder path, exact folder name, short name (the name it was started with: its newest run,
    logged when several share it; derived runs X-ft-…, X-fold0-… have names of their own) or unique prefix
    (`latest`: the newest run); errors list close names."""
    direct = Path(name).expanduser()
    if is_run_dir(direct):
        return direct
    runs = list_runs(root)  # oldest first
    names = [r.name for r in runs]
    exact = [r.path for r in runs if name in (r.name, Path(r.name).name)]
    if exact:
        return exact[-1]
    named = [r.path for r in runs if short_name(r.name) == name]
    if named:
        return newest_named(named, name)
    if name == cfg.LATEST and runs:
        return runs[-1].path
    matches = [n for n in names if n.startswith(name) or Path(n).name.startswith(name)]
    if len(matches) == 1:
        return root / matches[0]
    if len(matches) > 1:
        counts: dict[str, int] = {}
        for match in matches:
            counts[short_name(match)] = counts.get(short_name(match), 0) + 1
        shown = ", ".join(f"{short} ({n} runs)" if n > 1 else short for short, n in list(counts.items())[:8])
        raise RunError(f"{name!r} matches several runs: {shown}; give one of these names (its newest run) "
                       "or more of a folder name")
    for folder in (direct, root / name):  # a folder that is there but is not a run: say what it is or lacks
        if folder.is_dir() and (folder / "kfold.json").is_file():
            raise RunError(f"{folder} is a k-fold group, not a run: name one of its folds ({name}/<fold run>)")
        if folder.is_dir():
            raise RunError(f"{folder} is not a run folder: it has no {RunFolder(folder).config.name} "
                           "(a run writes one when it starts)")
    raise RunError(f"no run {name!r} in {root}{did_you_mean(name, names)}")


def epoch_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch metrics of a run (the last record of each epoch wins, so a resumed run reads cleanly)."""
    rows: dict[int, dict[str, Any]] = {}
    for event in read_events(RunFolder(run_dir).events, {"epoch"}):
        rows[int(event["epoch"])] = event.to_dict()
    return [rows[k] for k in sorted(rows)]


def saved_checkpoints(run_dir: Path) -> list[tuple[str, int]]:
    """(name, epoch) of each complete checkpoint of a run, newest epoch first (read from their meta.json;
    torch-free, for viewers). A checkpoint being written or damaged is left out."""
    found: list[tuple[str, int]] = []
    try:
        children = [c for c in RunFolder(run_dir).checkpoints.iterdir() if not c.name.startswith(".")]
    except OSError:
        return []
    for child in children:
        try:
            meta = json.loads((child / "meta.json").read_text(encoding="utf-8"))
            found.append((child.name, int(meta["epoch"])))
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            continue
    return sorted(found, key=lambda item: (-item[1], item[0] != "last", item[0]))


class RunLock:
    """One writer per run folder: an OS lock (flock on `<run>/.lock`) held for the life of the training
    process, taken before any setup. The kernel drops it when the process ends, however it ends (a SIGKILL
    included), so a stale lock never blocks a resume. The file names the holder for the refusal message."""

    def __init__(self, run_dir: Path) -> None:
        self.path = RunFolder(run_dir).lock
        self._handle: Any = None

    def acquire(self) -> RunLock:
        """Take the lock or raise RunError naming the process that holds it."""
        import fcntl

        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release/exit
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunError(f"{self.path.parent.name} is being trained by {holder}: one process at a time "
                           "writes a run folder; stop that one first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunningRuns:
    """Which runs of a runs folder are training now, or were started since the first scan (a short run can start
    and end between two scans, and should still be seen), cheaply enough to ask every few seconds with thousands
    of runs: a status.json is read again only when its modification time changed (a running one each time, so a
    killed process is noticed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._seen: dict[Path, tuple[float, str]] = {}  # status path -> (mtime, state)
        self._known: set[Path] | None = None  # the run folders of the first scan (any other is new); None before it

    def scan(self) -> list[Path]:
        """The run folders whose state is `starting` or `running`, and those that appeared since the first scan
        once their status is written (whatever its state: finished already, or failed)."""
        found: list[Path] = []
        candidates = self._candidates()
        if self._known is None:
            self._known = set(candidates)
        for run_dir in candidates:
            path = RunFolder(run_dir).status
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            known = self._seen.get(path)
            if known is None or known[0] != mtime or known[1] in ("running", "starting"):
                try:
                    state = str(read_status(run_dir).get("state"))
                except (RunError, OSError):
                    state = "unknown"
                self._seen[path] = (mtime, state)
            if self._seen[path][1] in ("running", "starting") or run_dir not in self._known:
                found.append(run_dir)
        return found

    def _candidates(self) -> list[Path]:
        try:
            children = [c for c in self.root.iterdir() if c.is_dir()]
        except OSError:
            return []
        runs: list[Path] = []
        for child in children:
            if RunFolder(child).status.exists() or RunFolder(child).config.exists():
                runs.append(child)
            else:
                try:
                    runs.extend(p for p in child.iterdir() if p.is_dir())  # k-fold group members
                except OSError:
                    continue
        return runs
