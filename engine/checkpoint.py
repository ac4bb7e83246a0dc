"""Checkpoints: atomic save, verified load, retention.

A checkpoint is a folder `checkpoints/<name>/` holding `weights.safetensors` (model), optionally
`ema.safetensors`, `state.pt` (optimizer, schedule, scaler, RNG states, counters; loadable with
`weights_only=True`), `config.yaml` (the resolved config) and `meta.json` (epoch, metrics, sha256 of every
file). It is written into a temporary folder, fsynced, then swapped in by renames; a crash at any point
leaves the previous checkpoint of that name readable (recovered from `.old-<name>` when needed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from engine.errors import CheckpointError

WEIGHTS = "weights.safetensors"
EMA = "ema.safetensors"
STATE = "state.pt"
META = "meta.json"
CONFIG = "config.yaml"


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    path: Path
    weights: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    state: dict[str, Any] | None
    meta: dict[str, Any]
    config_text: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _plain_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors wants contiguous CPU tensors that share no storage."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def save_checkpoint(
    ckpt_root: Path,
    name: str,
    *,
    weights: dict[str, torch.Tensor],
    config_text: str,
    meta: dict[str, Any],
    state: dict[str, Any] | None = None,
    ema: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write checkpoint `name` atomically (replacing an older one of that name) and return its folder."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_root / f".tmp-{name}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        save_file(_plain_tensors(weights), str(tmp / WEIGHTS))
        files = [WEIGHTS]
        if ema is not None:
            save_file(_plain_tensors(ema), str(tmp / EMA))
            files.append(EMA)
        if state is not None:
            torch.save(state, tmp / STATE)
            files.append(STATE)
        (tmp / CONFIG).write_text(config_text, encoding="utf-8")
        files.append(CONFIG)
        for file in files:
            _fsync_file(tmp / file)
        full_meta = {**meta, "name": name, "saved": time.time(), "sha256": {f: _sha256(tmp / f) for f in files}}
        from engine.events import strict_json

        (tmp / META).write_text(json.dumps(strict_json(full_meta), indent=2, sort_keys=True), encoding="utf-8")
        _fsync_file(tmp / META)
        _fsync_dir(tmp)
        _swap_in(ckpt_root, name, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ckpt_root / name


def _swap_in(ckpt_root: Path, name: str, tmp: Path) -> None:
    """Replace `name` by `tmp`: old -> .old-name, tmp -> name, drop .old-name (each step a rename).

    Only the writing process renames; readers fall back to `.old-name` while `name` is missing, so a viewer
    listing checkpoints can never race a save.
    """
    final = ckpt_root / name
    old = ckpt_root / f".old-{name}"
    if old.exists() and final.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(ckpt_root)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def readable_folder(ckpt_root: Path, name: str) -> Path:
    """The folder that holds checkpoint `name` now: `name`, or `.old-name` between the two renames of a save
    (or after a crash there). Read-only: nothing is renamed."""
    final, old = ckpt_root / name, ckpt_root / f".old-{name}"
    return old if not final.exists() and old.exists() else final


def checkpoint_dir(run_dir: Path, name: str) -> Path:
    """The folder of a run's checkpoint `name`."""
    return readable_folder(run_dir / "checkpoints", name)


def list_checkpoints(run_dir: Path) -> list[dict[str, Any]]:
    """Meta of every complete checkpoint of a run, by epoch."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    names = {p.name.removeprefix(".old-") for p in root.iterdir()
             if p.is_dir() and (not p.name.startswith(".") or p.name.startswith(".old-"))}
    metas = []
    for folder in (readable_folder(root, name) for name in sorted(names)):
        try:
            metas.append(json.loads((folder / META).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(metas, key=lambda m: (m.get("epoch", 0), m.get("name", "")))


def saved_classes(folder: Path) -> list[str] | None:
    """The class names a checkpoint folder's meta records; None when it is not one of ours or records none."""
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    classes = meta.get("classes") if isinstance(meta, dict) else None
    return [str(c) for c in classes] if isinstance(classes, list) and classes else None


def check_classes(folder: Path, classes: list[str], what: str) -> None:
    """Refuse data whose classes (names and order) differ from the ones checkpoint `folder` was trained on."""
    from engine.errors import classes_mismatch

    saved = saved_classes(folder)
    if saved is not None and saved != classes:
        raise CheckpointError(f"{what}: " + classes_mismatch(saved, f"the checkpoint {folder}", classes, "the data"))


def load_checkpoint(folder: Path, *, with_state: bool = True, verify: bool = True) -> Checkpoint:
    """Load a checkpoint folder, verifying each file's sha256 against its meta.

    A save of the same name may swap the folder while it is read (a viewer reading `last` during training):
    then the read starts again on the folder that holds the name now.
    """
    name = folder.name.removeprefix(".old-")
    for _attempt in range(8):
        try:
            return _load_once(folder, with_state=with_state, verify=verify)
        except Exception as exc:  # noqa: BLE001 - retried only when the folder moved away under the read
            if folder.is_dir() and not isinstance(exc, _Swapped):
                raise
            folder = readable_folder(folder.parent, name)
    return _load_once(folder, with_state=with_state, verify=verify)


class _Swapped(Exception):
    """A file of the checkpoint vanished while it was read (a concurrent save renamed its folder)."""


def _read_files(folder: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The bytes of the named files that exist, all read through one handle on the folder itself, so a
    concurrent rename of the folder cannot mix files of two checkpoint versions."""
    if os.open in os.supports_dir_fd:
        try:
            folder_fd = os.open(folder, os.O_RDONLY)
        except FileNotFoundError:
            raise _Swapped(str(folder)) from None
        opener = lambda name, flags: os.open(name, flags, dir_fd=folder_fd)  # noqa: E731
    else:  # no dir_fd (Windows): plain paths; a swap mid-read is retried by the caller
        folder_fd, opener = None, None
    contents: dict[str, bytes] = {}
    try:
        for name in names:
            try:
                with open(name if opener else folder / name, "rb", opener=opener) as handle:
                    contents[name] = handle.read()
            except FileNotFoundError:
                continue
        if folder_fd is not None and not _still_there(folder, folder_fd):
            raise _Swapped(str(folder))  # a save swapped (and may be deleting) the folder we read: read again
    finally:
        if folder_fd is not None:
            os.close(folder_fd)
    return contents


def _still_there(folder: Path, folder_fd: int) -> bool:
    """True when `folder` still names the directory behind `folder_fd`."""
    try:
        return os.stat(folder).st_ino == os.fstat(folder_fd).st_ino
    except FileNotFoundError:
        return False


def _load_once(folder: Path, *, with_state: bool, verify: bool) -> Checkpoint:
    import io

    from safetensors.torch import load as load_bytes

    files = _read_files(folder, (META, WEIGHTS, EMA, CONFIG) + ((STATE,) if with_state else ()))
    if META not in files:
        if not folder.is_dir() or (folder.parent / f".old-{folder.name}").is_dir():
            raise _Swapped(str(folder))
        raise CheckpointError(f"{folder}: not a checkpoint (no {META}); is the name right?")
    try:
        meta = json.loads(files[META].decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{folder / META}: corrupt ({exc})") from exc
    for file, expected in meta.get("sha256", {}).items():
        if not verify or (file == STATE and not with_state):
            continue
        if file not in files:
            raise CheckpointError(f"{folder / file}: missing from the checkpoint")
        if hashlib.sha256(files[file]).hexdigest() != expected:
            raise CheckpointError(f"{folder / file}: content does not match its recorded sha256 (corrupt or modified)")
    if WEIGHTS not in files:
        raise CheckpointError(f"{folder / WEIGHTS}: missing from the checkpoint")
    weights = load_bytes(files[WEIGHTS])
    ema = load_bytes(files[EMA]) if EMA in files else None
    state = None
    if STATE in files:
        state = torch.load(io.BytesIO(files[STATE]), map_location="cpu", weights_only=True)
    return Checkpoint(folder, weights, ema, state, meta, files.get(CONFIG, b"").decode("utf-8"))


def prune_periodic(ckpt_root: Path, keep: int) -> list[str]:
    """Keep the newest `keep` `epoch-NNN` checkpoints (0 keeps all); returns the removed names."""
    if keep <= 0 or not ckpt_root.is_dir():
        return []
    periodic = sorted(p for p in ckpt_root.iterdir() if p.is_dir() and p.name.startswith("epoch-"))
    removed = []
    for folder in periodic[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed

