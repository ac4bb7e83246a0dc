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
from safetensors.torch import load_file, save_file

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
        (tmp / META).write_text(json.dumps(full_meta, indent=2, sort_keys=True), encoding="utf-8")
        _fsync_file(tmp / META)
        _fsync_dir(tmp)
        _swap_in(ckpt_root, name, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ckpt_root / name


def _swap_in(ckpt_root: Path, name: str, tmp: Path) -> None:
    """Replace `name` by `tmp`: old -> .old-name, tmp -> name, drop .old-name (each step a rename)."""
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


def _recover(ckpt_root: Path, name: str) -> None:
    """After a crash between the two renames, bring back the previous checkpoint."""
    final, old = ckpt_root / name, ckpt_root / f".old-{name}"
    if not final.exists() and old.exists():
        os.replace(old, final)


def checkpoint_dir(run_dir: Path, name: str) -> Path:
    """The folder of a run's checkpoint `name` (recovering an interrupted swap)."""
    root = run_dir / "checkpoints"
    _recover(root, name)
    return root / name


def list_checkpoints(run_dir: Path) -> list[dict[str, Any]]:
    """Meta of every complete checkpoint of a run, by epoch."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    for old in root.glob(".old-*"):
        _recover(root, old.name[len(".old-"):])
    metas = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            metas.append(json.loads((folder / META).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(metas, key=lambda m: (m.get("epoch", 0), m.get("name", "")))


def load_checkpoint(folder: Path, *, with_state: bool = True, verify: bool = True) -> Checkpoint:
    """Load a checkpoint folder, verifying each file's sha256 against its meta."""
    if not (folder / META).is_file():
        raise CheckpointError(f"{folder}: not a checkpoint (no {META}); is the name right?")
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{folder / META}: corrupt ({exc})") from exc
    for file, expected in meta.get("sha256", {}).items():
        if not verify or (file == STATE and not with_state):
            continue
        path = folder / file
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint")
        if _sha256(path) != expected:
            raise CheckpointError(f"{path}: content does not match its recorded sha256 (corrupt or modified)")
    weights = load_file(str(folder / WEIGHTS))
    ema = load_file(str(folder / EMA)) if (folder / EMA).is_file() else None
    state = None
    if with_state and (folder / STATE).is_file():
        state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
    config_text = (folder / CONFIG).read_text(encoding="utf-8") if (folder / CONFIG).is_file() else ""
    return Checkpoint(folder, weights, ema, state, meta, config_text)


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

