"""Run events: their types, the append-only JSONL writer and the tail-reader.

`events.jsonl` in a run folder is the only channel between a training process and any viewer: one JSON
object per line, each with a `type` and a `time` (unix seconds).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# type -> the fields it carries (documentation and a guard against typos in emit calls)
EVENT_TYPES: dict[str, str] = {
    "run_start": "run, name, pid, config_hash, parent, resumed_from",
    "data_ready": "source, classes, counts {train,val,test}, image_size, channels, cache_hit, resident, load_s",
    "model_ready": "model, params, macs",
    "weights_loaded": "source (model.pretrained), replaced (head tensors not taken from it)",
    "backbone": "epoch, trainable, message (freezing the backbone for the first epochs)",
    "epoch_start": "epoch, epochs, steps",
    "step": "epoch, step, global_step, loss, lr, images_per_s",
    "epoch": "epoch, train_loss, train_acc, val_loss, val_acc, lr, epoch_s, train_s, images_per_s (training only), gpu_mem_mb",
    "lr_drop": "epoch, old_lr, new_lr",
    "checkpoint": "name, epoch, path",
    "test": "split, loss, acc, checkpoint",
    "warning": "message",
    "run_end": "state, reason, epochs_done, best_val_acc, test_acc, wall_s",
}

Listener = Callable[[dict[str, Any]], None]


def strict_json(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as strings so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


class EventWriter:
    """Appends events to a JSONL file (flushed per line) and forwards them to in-process listeners."""

    def __init__(self, path: Path | None, listeners: list[Listener] | None = None) -> None:
        self.path = path
        self.listeners = list(listeners or [])
        self._file = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        """Record one event of a known type."""
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        event = {"type": type, "time": round(time.time(), 3), **strict_json(fields)}
        self._write(event)
        for listener in list(self.listeners):
            try:
                listener(event)
            except (Exception, SystemExit) as exc:  # a closed terminal or a broken viewer never stops the run
                self.listeners.remove(listener)
                self._write({"type": "warning", "time": round(time.time(), 3),
                             "message": f"a viewer failed on a {type} event and gets no more events "
                                        f"({exc.__class__.__name__}: {exc}); training goes on"})
        return event

    def _write(self, event: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()

    def close(self) -> None:
        """Flush to disk and close the file."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def read_events(path: Path, types: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """All complete events of a file (a partial last line, still being written, is skipped)."""
    events, _ = tail_events(path, 0)
    for event in events:
        if types is None or event.get("type") in types:
            yield event


def tail_events(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Events appended since byte `offset`, and the offset to continue from (follows a live run)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    events: list[dict[str, Any]] = []
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        consumed += len(line)
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events, offset + consumed
