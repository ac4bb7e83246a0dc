"""The image table a source produces, its on-disk cache, and conversions to the training resolution."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engine.data.paths import data_dir

CACHE_VERSION = 1
Progress = Callable[[str, int, int], None]


@dataclass
class Table:
    """Decoded images of one source: uint8 (N, C, H, W), int64 labels, class names.

    Rows from `test_start` on are the source's own test split (None: the source has none).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    test_start: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def cache_key(fingerprint: dict[str, Any]) -> str:
    """A short stable hash of everything that determines a table's content."""
    text = json.dumps({"cache_version": CACHE_VERSION, **fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_path(key: str) -> Path:
    """The cache file of a key: data_dir()/cache/<key>.pt."""
    return data_dir() / "cache" / f"{key}.pt"


def load_cached(key: str) -> Table | None:
    """The cached table of `key`, or None when absent or unreadable (it is then rebuilt)."""
    path = cache_path(key)
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        test_start = int(blob["test_start"])
        table = Table(
            images=blob["images"].contiguous(),
            labels=blob["labels"],
            classes=list(blob["classes"]),
            test_start=None if test_start < 0 else test_start,
            meta=json.loads(blob["meta"]),
        )
    except Exception:  # a truncated or foreign file: ignore it, the table is rebuilt and rewritten
        return None
    _mark_used(path, table)
    return table


def _mark_used(path: Path, table: Table) -> None:
    """The sidecar's modification time is the entry's last use (`data cache --unused-for`); an entry from before
    sidecars gets one now."""
    sidecar = path.with_suffix(".json")
    with contextlib.suppress(OSError):
        if sidecar.is_file():
            os.utime(sidecar)
        else:
            sidecar.write_text(json.dumps(_about(table, {})), encoding="utf-8")


def _about(table: Table, about: dict[str, Any]) -> dict[str, Any]:
    return {**about, "images": int(table.images.shape[0]), "shape": list(table.images.shape[1:]),
            "classes": len(table.classes), "created": round(time.time(), 3)}


def save_cached(key: str, table: Table, about: dict[str, Any] | None = None) -> None:
    """Write the table atomically (temporary file + rename) so readers never see half a file, and a small
    JSON sidecar saying what it holds (`about`: source, root, ...), for `data cache`."""
    path = cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    blob = {
        "images": table.images.contiguous(),
        "labels": table.labels,
        "classes": list(table.classes),
        "test_start": -1 if table.test_start is None else int(table.test_start),
        "meta": json.dumps(table.meta),
    }
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    path.with_suffix(".json").write_text(json.dumps(_about(table, about or {}), default=str), encoding="utf-8")


def cache_entries() -> list[dict[str, Any]]:
    """Every decoded table in the cache, least recently used first: key, path, bytes, last use and what it holds."""
    folder = data_dir() / "cache"
    entries = []
    for path in sorted(folder.glob("*.pt")) if folder.is_dir() else []:
        sidecar = path.with_suffix(".json")
        try:
            about = json.loads(sidecar.read_text(encoding="utf-8"))
            used = sidecar.stat().st_mtime
        except (OSError, ValueError):
            about, used = {}, path.stat().st_mtime
        entries.append({"key": path.stem, "path": str(path), "bytes": path.stat().st_size, "last_used": used,
                        **about})
    return sorted(entries, key=lambda entry: entry["last_used"])


def remove_cached(key: str) -> None:
    """Delete one cache entry (the next run that needs it decodes its images again)."""
    path = cache_path(key)
    for file in (path, path.with_suffix(".json")):
        file.unlink(missing_ok=True)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) to `channels` (1 = ITU-R 601 luma like PIL's L, 3 = gray repeated)."""
    have = images.shape[1]
    if have == channels:
        return images
    if channels == 3 and have == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and have == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        out = torch.empty((images.shape[0], 1, *images.shape[2:]), dtype=torch.uint8)
        for start in range(0, images.shape[0], 4096):
            chunk = images[start:start + 4096].float()
            out[start:start + 4096] = (chunk * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        return out
    raise ValueError(f"cannot convert {have} channels to {channels}")


def resize_images(images: torch.Tensor, size: int, progress: Progress | None = None) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) to (size, size) with antialiased bilinear filtering, in chunks."""
    if tuple(images.shape[2:]) == (size, size):
        return images
    n = images.shape[0]
    out = torch.empty((n, images.shape[1], size, size), dtype=torch.uint8)
    step = 2048
    for start in range(0, n, step):
        chunk = images[start:start + step].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start:start + step] = resized.round().clamp(0, 255).to(torch.uint8)
        if progress is not None:
            progress("resize", min(n, start + step), n)
    return out


def fit_table(table: Table, image_size: int | None, channels: int | None, progress: Progress | None) -> Table:
    """The table at the configured channels and square resolution (None keeps the native value)."""
    images = table.images
    if channels is not None:
        images = convert_channels(images, channels)
    if image_size is not None:
        images = resize_images(images, image_size, progress)
    table.images = images.contiguous()
    return table
