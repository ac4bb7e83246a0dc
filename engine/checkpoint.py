"""Checkpoints: atomic save, verified load, retention.

A checkpoint is a folder `checkpoints/<name>/` holding `weights.safetensors` (model), optionally
`ema.safetensors`, `state.pt` (optimizer, schedule, scaler, RNG states, counters; loadable with
`weights_only=True`), `config.yaml` (the resolved config) and `meta.json` (epoch, metrics, sha256 of every
file). It is written into a temporary folder, fsynced, then swapped in by renames; a crash at any point
leaves the previous checkpoint of that name readable (recovered from `.old-<name>` when needed).

Every reader verifies a checkpoint the same way (`read_meta`, `verified_digest`, `load_checkpoint`): its
meta.json must be a well-formed record whose sha256 map names every file read, and each file must match its
digest and be what its name says (safetensors, a torch.save archive of plain values). Anything else is a
`CheckpointError` naming the file; a damaged checkpoint is never used.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from engine.errors import CheckpointError
from engine.safe_load import load_safetensors, load_torch_values

WEIGHTS = "weights.safetensors"
EMA = "ema.safetensors"
STATE = "state.pt"
META = "meta.json"
CONFIG = "config.yaml"
CHECKPOINT_FILES = (WEIGHTS, EMA, STATE, CONFIG)  # every file a checkpoint may hold besides its meta
MAX_META_BYTES = 1 << 20  # a meta.json is a few KB; anything this large is not one of ours
STATE_KEYS = ("optimizer", "schedule", "rng_ranks", "progress")  # what a resumable state.pt holds
_SHA256 = re.compile(r"[0-9a-f]{64}")


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


# ---------------------------------------------------------------- what a file is


# ---------------------------------------------------------------- meta.json


def parse_meta(raw: bytes, path: Path) -> dict[str, Any]:
    """A checkpoint's meta record from the bytes of its meta.json, checked for shape; a damaged one is a
    CheckpointError naming the file and the key."""
    if len(raw) > MAX_META_BYTES:
        raise CheckpointError(f"{path}: damaged: {len(raw)} bytes, far more than a checkpoint record holds")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: damaged: not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                              f"{exc.start})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: damaged: not JSON ({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: damaged: nested too deeply to be a checkpoint record") from None
    _check_meta(meta, path)
    return meta


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_meta(meta: Any, path: Path) -> None:
    """The shapes every reader relies on: sha256 (file -> hex digest, weights included), epoch counters,
    classes, inputs."""
    def bad(key: str, what: str) -> CheckpointError:
        return CheckpointError(f"{path}: damaged: {key}: {what}")

    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: damaged: a {type(meta).__name__}, not a checkpoint record (a JSON object)")
    digests = meta.get("sha256")
    if not isinstance(digests, dict) or not digests:
        raise bad("sha256", "no usable record of the files' sha256 (expected a mapping of file names to digests); "
                  "the checkpoint cannot be verified, so it is not used")
    for name, digest in digests.items():
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise bad(f"sha256.{name}", f"{digest!r} is not a sha256 hex digest")
    if WEIGHTS not in digests:
        raise bad("sha256", f"records no digest for {WEIGHTS}; the weights cannot be verified")
    for key in ("epoch", "step_in_epoch", "global_step", "world_size"):
        if key in meta and not (_is_int(meta[key]) and meta[key] >= 0):
            raise bad(key, f"{meta[key]!r} is not a count")
    if "name" in meta and not isinstance(meta["name"], str):
        raise bad("name", f"{meta['name']!r} is not a name")
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, (str, int)) and
                                                                      not isinstance(c, bool) for c in classes)):
        raise bad("classes", "not a list of class names")
    if "metrics" in meta and not isinstance(meta["metrics"], dict):
        raise bad("metrics", "not a mapping")
    inputs = meta.get("inputs")
    if inputs is not None:
        if not isinstance(inputs, dict):
            raise bad("inputs", "not a mapping")
        for key in ("image_size", "channels"):
            if not (_is_int(inputs.get(key)) and inputs[key] >= 1):
                raise bad(f"inputs.{key}", f"{inputs.get(key)!r} is not a positive integer")
        for key in ("mean", "std"):
            values = inputs.get(key)
            if not (isinstance(values, list) and len(values) == inputs["channels"] and all(map(_is_number, values))):
                raise bad(f"inputs.{key}", f"{values!r} is not one number per channel")


def read_meta(folder: Path) -> dict[str, Any]:
    """The checked meta record of checkpoint folder `folder` (see `parse_meta`)."""
    path = folder / META
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: not a checkpoint (no {META})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return parse_meta(raw, path)


def verified_digest(folder: Path, meta: dict[str, Any], file: str) -> str:
    """The sha256 of `folder/file` as it is now, checked against `meta`'s record (what a cache may be keyed by:
    the verified content, never the record alone)."""
    expected = meta.get("sha256", {}).get(file) if isinstance(meta.get("sha256"), dict) else None
    if not expected:
        raise CheckpointError(f"{folder / META}: records no sha256 for {file}; the file cannot be verified")
    try:
        actual = _sha256(folder / file)
    except FileNotFoundError:
        raise CheckpointError(f"{folder / file}: missing from the checkpoint") from None
    except OSError as exc:
        raise CheckpointError(f"{folder / file}: cannot be read ({exc.strerror or exc})") from None
    if actual != expected:
        raise CheckpointError(f"{folder / file}: content does not match its recorded sha256 (corrupt or modified); "
                              "it is not used")
    return actual


def read_verified(path: Path) -> bytes:
    """The bytes of a weights file; when it is a file of one of our checkpoints (a meta.json beside it) they are
    checked against its sha256 record first, the same way every reader of a checkpoint checks them. A plain
    file elsewhere is returned as it is."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if path.name in CHECKPOINT_FILES and (path.parent / META).is_file():
        meta = read_meta(path.parent)
        expected = meta["sha256"].get(path.name)
        if expected is None:
            raise CheckpointError(f"{path}: no sha256 recorded for it in {path.parent / META}; it cannot be "
                                  "verified, so it is not used")
        if hashlib.sha256(data).hexdigest() != expected:
            raise CheckpointError(f"{path}: content does not match its recorded sha256 (corrupt or modified); "
                                  "it is not used")
    return data


# ---------------------------------------------------------------- saving


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


_TMP_NAME = re.compile(r"\.tmp-(?P<name>.+)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<ns>\d+)")
_OLD_TMP_NAME = re.compile(r"\.tmp-(?P<name>.+)-(?P<pid>\d+)-(?P<ns>\d+)")  # before the host was recorded


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temps(ckpt_root: Path) -> list[str]:
    """Delete the temporary folders (`.tmp-*`) of saves killed before they finished: those of a process of this
    host that is gone. A folder of a live process (a writer may own it) or of another host is left alone.
    Returns the names removed."""
    removed = []
    try:
        children = list(ckpt_root.iterdir())
    except OSError:
        return removed
    here = _host_tag()
    for child in children:
        match = _TMP_NAME.fullmatch(child.name)
        host = match.group("host") if match else here
        match = match or _OLD_TMP_NAME.fullmatch(child.name)
        if match is None or host != here:
            continue
        pid = int(match.group("pid"))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        shutil.rmtree(child, ignore_errors=True)
        if not child.exists():
            removed.append(child.name)
    return removed


def _no_space(exc: BaseException) -> bool:
    """Whether a save failed for lack of space (OSError ENOSPC/EDQUOT, or torch/safetensors saying so)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return True
        text = str(exc).lower()
        if "no space left" in text or "quota exceeded" in text or "unexpected pos" in text:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _fmt_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _estimate_bytes(weights: dict[str, torch.Tensor], ema: dict[str, torch.Tensor] | None,
                    state: dict[str, Any] | None) -> int:
    """About how many bytes a save writes (tensors only; the optimizer state counted twice the weights)."""
    size = sum(t.numel() * t.element_size() for t in weights.values())
    total = size + (size if ema is not None else 0)
    return total + (2 * size if state is not None else 0)


def share_like(reference: Path, paths: list[Path]) -> None:
    """Give `paths` the permissions of `reference`, a file written the usual way (safetensors writes its files
    owner-only, 0600: on a shared runs folder the others could read every file of a run but its weights)."""
    mode = reference.stat().st_mode & 0o777
    for path in paths:
        os.chmod(path, mode)


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
    """Write checkpoint `name` atomically (replacing an older one of that name) and return its folder.

    Temporary folders left by killed saves are removed first (`remove_stale_temps`). A save that fails for
    lack of space is a CheckpointError saying so (free space against what the save needs); either way the
    previous checkpoint of that name is intact."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(ckpt_root)
    tmp = ckpt_root / f".tmp-{name}-{_host_tag()}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        tmp.mkdir()
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
        share_like(tmp / CONFIG, [tmp / f for f in files if f.endswith(".safetensors")])
        for file in files:
            _fsync_file(tmp / file)
        full_meta = {**meta, "name": name, "saved": time.time(), "sha256": {f: _sha256(tmp / f) for f in files}}
        from engine.events import strict_json

        (tmp / META).write_text(json.dumps(strict_json(full_meta), indent=2, sort_keys=True), encoding="utf-8")
        _fsync_file(tmp / META)
        _fsync_dir(tmp)
        _swap_in(ckpt_root, name, tmp)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception) and _no_space(exc):
            raise CheckpointError(_no_space_message(ckpt_root, name, _estimate_bytes(weights, ema, state))) from None
        raise
    return ckpt_root / name


def _no_space_message(ckpt_root: Path, name: str, needed: int) -> str:
    """What a save that ran out of space says: where, free against needed, and that nothing was replaced."""
    try:
        free = shutil.disk_usage(ckpt_root).free
    except OSError:
        free = 0
    try:
        epoch = read_meta(readable_folder(ckpt_root, "last")).get("epoch", "?")
        last = f"last (epoch {epoch}) is intact, so the run can be resumed once there is space"
    except CheckpointError:
        last = "no `last` checkpoint was saved before, so the run cannot be resumed"
    kept = "its previous version is intact" if readable_folder(ckpt_root, name).is_dir() else "it had none before"
    return (f"{ckpt_root}: no space left on the device to save checkpoint {name}: {_fmt_bytes(free)} free, about "
            f"{_fmt_bytes(needed)} needed. Nothing was replaced: {kept}; {last}")


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


def _checkpoint_names(run_dir: Path) -> list[str]:
    root = run_dir / "checkpoints"
    try:
        children = list(root.iterdir())
    except OSError:
        return []
    return sorted({p.name.removeprefix(".old-") for p in children
                   if p.is_dir() and (not p.name.startswith(".") or p.name.startswith(".old-"))})


def list_checkpoints(run_dir: Path) -> list[dict[str, Any]]:
    """Meta of every complete checkpoint of a run whose record is intact, by epoch (see `damaged_checkpoints`
    for the others)."""
    metas = []
    for name in _checkpoint_names(run_dir):
        try:
            metas.append(read_meta(checkpoint_dir(run_dir, name)))
        except CheckpointError:
            continue
    return sorted(metas, key=lambda m: (m.get("epoch", 0), m.get("name", "")))


def damaged_checkpoints(run_dir: Path) -> dict[str, str]:
    """Checkpoint name -> why its record cannot be used, for the checkpoints `list_checkpoints` leaves out."""
    damaged = {}
    for name in _checkpoint_names(run_dir):
        try:
            read_meta(checkpoint_dir(run_dir, name))
        except CheckpointError as exc:
            damaged[name] = str(exc)
    return damaged


def saved_classes(folder: Path) -> list[str] | None:
    """The class names a checkpoint folder's meta records; None when it is not one of ours or records none."""
    try:
        meta = read_meta(folder)
    except CheckpointError:
        return None
    classes = meta.get("classes")
    return [str(c) for c in classes] if isinstance(classes, list) and classes else None


def check_classes(folder: Path, classes: list[str], what: str) -> None:
    """Refuse data whose classes (names and order) differ from the ones checkpoint `folder` was trained on."""
    from engine.errors import classes_mismatch

    saved = saved_classes(folder)
    if saved is not None and saved != classes:
        raise CheckpointError(f"{what}: " + classes_mismatch(saved, f"the checkpoint {folder}", classes, "the data"))


def load_checkpoint(folder: Path, *, with_state: bool = True, verify: bool = True,
                    with_weights: bool = True) -> Checkpoint:
    """Load a checkpoint folder, verifying each file's sha256 against its meta (without `with_weights`: only its
    meta and config, one version of both, for a cheap look; `weights` is then empty).

    A save of the same name may swap the folder while it is read (a viewer reading `last` during training):
    then the read starts again on the folder that holds the name now. A checkpoint deleted while it is read is
    a CheckpointError saying so.
    """
    name = folder.name.removeprefix(".old-")
    for _attempt in range(8):
        try:
            return _load_once(folder, with_state=with_state, verify=verify, with_weights=with_weights)
        except Exception as exc:  # noqa: BLE001 - retried only when the folder moved away under the read
            if folder.is_dir() and not isinstance(exc, _Swapped):
                raise
            if not folder.parent.is_dir():
                raise CheckpointError(f"{folder}: the checkpoint was deleted while it was read") from None
            folder = readable_folder(folder.parent, name)
    try:
        return _load_once(folder, with_state=with_state, verify=verify, with_weights=with_weights)
    except _Swapped:
        raise CheckpointError(f"{folder}: the checkpoint vanished or was replaced again and again while it was "
                              "read (deleted, or saved continuously?); read it again") from None


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


def _load_once(folder: Path, *, with_state: bool, verify: bool, with_weights: bool = True) -> Checkpoint:
    skipped = (() if with_state else (STATE,)) + (() if with_weights else (WEIGHTS, EMA))  # not read, not checked
    files = _read_files(folder, tuple(f for f in (META, WEIGHTS, EMA, CONFIG, STATE) if f not in skipped))
    if META not in files:
        if not folder.is_dir() or (folder.parent / f".old-{folder.name}").is_dir():
            raise _Swapped(str(folder))
        raise CheckpointError(f"{folder}: not a checkpoint (no {META}); is the name right?")
    meta = parse_meta(files[META], folder / META)
    digests = meta["sha256"]
    if verify:
        for file in CHECKPOINT_FILES:
            if file in skipped:
                continue
            expected = digests.get(file)
            if file in files and expected is None:
                raise CheckpointError(f"{folder / file}: no sha256 recorded for it in {META}; it cannot be verified, "
                                      "so it is not used")
            if expected is None:
                continue
            if file not in files:
                raise CheckpointError(f"{folder / file}: missing from the checkpoint")
            if hashlib.sha256(files[file]).hexdigest() != expected:
                raise CheckpointError(f"{folder / file}: content does not match its recorded sha256 (corrupt or "
                                      "modified); it is not used")
    if WEIGHTS not in files and with_weights:
        raise CheckpointError(f"{folder / WEIGHTS}: missing from the checkpoint")
    weights = load_safetensors(files[WEIGHTS], folder / WEIGHTS) if with_weights else {}
    ema = load_safetensors(files[EMA], folder / EMA) if EMA in files else None
    state = None
    if STATE in files:
        state = load_torch_values(files[STATE], folder / STATE, archive_only=True)
    try:
        config_text = files.get(CONFIG, b"").decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{folder / CONFIG}: not UTF-8 text") from None
    return Checkpoint(folder, weights, ema, state, meta, config_text)


# ---------------------------------------------------------------- resuming


@dataclass
class ResumePoint:
    """The checkpoint a resume continues from: the newest intact one holding training state."""

    folder: Path
    meta: dict[str, Any]
    passed_over: dict[str, str] = field(default_factory=dict)  # newer checkpoint name -> why it was not used
    newest_epoch: int | None = None  # the furthest epoch any checkpoint or the run's status records

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch", 0))

    @property
    def epochs_lost(self) -> int:
        """Epochs trained after this checkpoint that a resume from it trains again."""
        return max(0, (self.newest_epoch or 0) - self.epoch)

    def note(self) -> str | None:
        """What resuming from here costs, when newer checkpoints were passed over; None when it is `last`."""
        if not self.passed_over:
            return None
        why = "; ".join(f"{name}: {reason}" for name, reason in self.passed_over.items())
        lost = (f"{self.epochs_lost} epoch(s) (epochs {self.epoch + 1}-{self.newest_epoch}) will be trained again"
                if self.epochs_lost else "no finished epoch is lost")
        return (f"resuming from checkpoint {self.meta.get('name', self.folder.name)} (epoch {self.epoch}), the "
                f"newest intact one with training state: {lost}. Passed over: {why}")


def resume_point(run_dir: Path) -> ResumePoint:
    """The newest checkpoint of a run that is intact (record, digests, safe state) and holds training state:
    `last` when it is sound, else the newest other one, with what was passed over and why (and, from the
    records and the run's status, how many epochs that costs). No such checkpoint is a CheckpointError listing
    each one and its problem."""
    candidates: list[tuple[str, dict[str, Any] | None]] = []
    passed: dict[str, str] = {}
    newest = _status_epoch(run_dir)
    for name in _checkpoint_names(run_dir):
        folder = checkpoint_dir(run_dir, name)
        try:
            meta = read_meta(folder)
        except CheckpointError as exc:
            if name == "last":
                passed[name] = _reason(exc, folder)
            candidates.append((name, None))
            continue
        newest = max(newest or 0, int(meta.get("epoch", 0)))
        candidates.append((name, meta))
    if not candidates:
        raise CheckpointError(f"{run_dir} has no checkpoint to resume from (nothing in {run_dir / 'checkpoints'})")
    readable = sorted(((name, meta) for name, meta in candidates if meta is not None),
                      key=lambda c: (-int(c[1].get("epoch", 0)), -int(c[1].get("step_in_epoch", 0)), c[0] != "last"))
    for name, meta in readable:
        folder = checkpoint_dir(run_dir, name)
        if STATE not in meta["sha256"]:
            passed[name] = "holds no training state (weights only)"
            continue
        try:
            state = load_checkpoint(folder, with_state=True).state
            missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
            if missing:
                raise CheckpointError(f"{folder / STATE}: not a training state (no {', '.join(missing)})")
        except CheckpointError as exc:
            passed[name] = _reason(exc, folder)
            continue
        return ResumePoint(folder, meta, passed, newest)
    for name, meta in candidates:  # every damaged record, for the error
        if meta is None and name not in passed:
            try:
                read_meta(checkpoint_dir(run_dir, name))
            except CheckpointError as exc:
                passed[name] = _reason(exc, checkpoint_dir(run_dir, name))
    why = "; ".join(f"{name}: {reason}" for name, reason in passed.items())
    raise CheckpointError(f"{run_dir.name}: no intact checkpoint with training state to resume from ({why}); "
                          "start a new run, or fine-tune from intact weights")


def _status_epoch(run_dir: Path) -> int | None:
    """The epochs done that the run's status.json records, when it is readable."""
    try:
        status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    epoch = status.get("epoch") if isinstance(status, dict) else None
    return epoch if _is_int(epoch) and epoch >= 0 else None


def _reason(exc: CheckpointError, folder: Path) -> str:
    """An error's text without the folder it starts with (the caller names the checkpoint)."""
    text = str(exc)
    for prefix in (str(folder) + "/", str(folder) + ": "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


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
