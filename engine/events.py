"""Run events: their typed definitions, the append-only JSONL writer, the tail-reader and the follower.

`events.jsonl` in a run folder is the only channel between a training process and any viewer: one JSON
object per line, each with a `type`, a `time` (unix seconds) and the `schema` version of its definition.
`EVENT_SPECS` is the one definition of every type's fields: `EventWriter.emit` refuses a field a type does
not declare, and `parse_event` turns a line back into an `Event` (a read-only mapping), skipping lines that
are not events of a known type with their required fields of the right types. Readers tolerate what a later
schema adds: unknown types are skipped, unknown fields are kept.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 1
NUMBER = (int, float)
OPT_NUMBER = (int, float, type(None))
OPT_STR = (str, type(None))


@dataclass(frozen=True)
class EventSpec:
    """The fields of one event type: required ones with their JSON types, optional ones likewise."""

    doc: str
    required: dict[str, tuple[type, ...]]
    optional: dict[str, tuple[type, ...]] = field(default_factory=dict)

    def fields(self) -> set[str]:
        return set(self.required) | set(self.optional)


EVENT_SPECS: dict[str, EventSpec] = {
    "run_start": EventSpec("a training process started (or resumed) in this folder",
                           {"run": (str,), "name": (str,), "pid": (int,)},
                           {"config_hash": OPT_STR, "parent": OPT_STR, "resumed_from": OPT_STR, "host": OPT_STR}),
    "environment": EventSpec("what this start or resume ran with (engine.provenance.collect_environment)",
                             {"env": (dict,)}),
    "data_progress": EventSpec("decoding a data set into its image table (first use only)",
                               {"done": (int,), "total": (int,)}, {"stage": OPT_STR}),
    "data_ready": EventSpec("the image table and splits are ready",
                            {"source": (str,), "classes": (int,), "counts": (dict,), "image_size": (int,),
                             "channels": (int,)},
                            {"info": (dict,), "resident": (bool,), "load_s": OPT_NUMBER}),
    "model_ready": EventSpec("the model is built", {"model": (str,), "params": (int,)}, {"macs": OPT_NUMBER}),
    "weights_loaded": EventSpec("pretrained weights were loaded (head tensors replaced are named)",
                                {"source": (str,)}, {"replaced": (list, type(None))}),
    "backbone": EventSpec("the backbone is frozen or unfrozen", {"epoch": (int,), "trainable": (bool,)},
                          {"message": OPT_STR}),
    "epoch_start": EventSpec("an epoch starts", {"epoch": (int,), "epochs": (int,), "steps": (int,)}),
    "step": EventSpec("one log interval of training steps",
                      {"epoch": (int,), "step": (int,), "global_step": (int,), "loss": NUMBER, "lr": NUMBER},
                      {"images_per_s": OPT_NUMBER}),
    "epoch": EventSpec("an epoch's metrics (training and validation)",
                       {"epoch": (int,), "train_loss": NUMBER, "train_acc": NUMBER, "lr": NUMBER},
                       {"val_loss": OPT_NUMBER, "val_acc": OPT_NUMBER, "epoch_s": OPT_NUMBER,
                        "train_s": OPT_NUMBER, "images_per_s": OPT_NUMBER, "gpu_mem_mb": OPT_NUMBER}),
    "lr_drop": EventSpec("a stepped schedule lowered the LR", {"epoch": (int,), "old_lr": NUMBER, "new_lr": NUMBER}),
    "checkpoint": EventSpec("a checkpoint was saved", {"name": (str,), "epoch": (int,), "path": (str,)},
                            {"metric": OPT_STR}),  # `best`'s: the metric that picked it (train.checkpoint.best_metric)
    "test": EventSpec("test-split metrics at the end of the run",
                      {"split": (str,), "loss": NUMBER, "acc": NUMBER}, {"checkpoint": OPT_STR}),
    "warning": EventSpec("something the user should know; training goes on", {"message": (str,)},
                         {"skipped": (int,), "skipped_files": (list,)}),
    "note": EventSpec("what the run does, said once (a resumed run's extended schedule)", {"message": (str,)}),
    "stop_requested": EventSpec("a graceful stop was asked for (signal or stop file)", {"source": (str,)}),
    "run_end": EventSpec("the training process ends",
                         {"state": (str,), "epochs_done": (int,)},
                         {"reason": OPT_STR, "best_val_acc": OPT_NUMBER, "test_acc": OPT_NUMBER,
                          "wall_s": OPT_NUMBER}),
}

Listener = Callable[[dict[str, Any]], None]


class Event(Mapping[str, Any]):
    """One parsed event: a read-only mapping of its JSON fields, with `type`, `time` and `schema`."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def type(self) -> str:
        return str(self._data["type"])

    @property
    def time(self) -> float:
        return float(self._data.get("time", 0.0))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Event({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self._data)


def _non_finite(value: Any) -> Any:
    """strict_json writes NaN/Inf as strings: read them back as floats."""
    if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(value)
    return value


def _matches(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number here
    return isinstance(value, types)


def parse_event(raw: Any) -> Event | None:
    """An `Event` from one decoded JSON line, or None when it is not an event this version knows
    (not an object, unknown type, a required field missing or of the wrong type)."""
    if not isinstance(raw, dict):
        return None
    spec = EVENT_SPECS.get(raw.get("type"))  # type: ignore[arg-type]
    if spec is None or not isinstance(raw.get("time", 0.0), NUMBER):
        return None
    data = dict(raw)
    for name, types in (*spec.required.items(), *spec.optional.items()):
        if name not in data:
            if name in spec.required:
                return None
            continue
        if NUMBER[1] in types:
            data[name] = _non_finite(data[name])
        if not _matches(data[name], types):
            return None
    return Event(data)


def strict_json(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as strings so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def _ends_mid_line(path: Path) -> bool:
    """True when a file's last byte is not a newline (a line torn by a killed writer)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except FileNotFoundError:
        return False


class EventWriter:
    """Appends events to a JSONL file (flushed per line) and forwards them to in-process listeners."""

    def __init__(self, path: Path | None, listeners: list[Listener] | None = None) -> None:
        self.path = path
        self.listeners = list(listeners or [])
        torn = path is not None and _ends_mid_line(path)
        self._file = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115
        if torn and self._file is not None:  # never glue an event onto a torn line: start a fresh one
            self._file.write("\n")

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        """Record one event of a declared type with declared fields."""
        spec = EVENT_SPECS.get(type)
        if spec is None:
            raise ValueError(f"unknown event type {type!r}")
        undeclared = set(fields) - spec.fields()
        if undeclared:
            raise ValueError(f"event {type!r} does not declare {sorted(undeclared)}")
        event = {"type": type, "time": round(time.time(), 3), "schema": SCHEMA, **strict_json(fields)}
        self._write(event)
        for listener in list(self.listeners):
            try:
                listener(event)
            except (Exception, SystemExit) as exc:  # a closed terminal or a broken viewer never stops the run
                self.listeners.remove(listener)
                self._write({"type": "warning", "time": round(time.time(), 3), "schema": SCHEMA,
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


def read_events(path: Path, types: set[str] | None = None) -> Iterator[Event]:
    """All complete, well-formed events of a file (a partial last line, still being written, is skipped)."""
    events, _ = tail_events(path, 0)
    for event in events:
        if types is None or event.type in types:
            yield event


def tail_events(path: Path, offset: int) -> tuple[list[Event], int]:
    """Events appended since byte `offset`, and the offset to continue from (follows a live run).

    Only whole lines are consumed: a torn last line is read again once its newline arrives. Lines that are
    not events of a known type (garbage, `42`, an `epoch` without its fields) are skipped.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return [], offset
    events: list[Event] = []
    consumed = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        consumed += len(line)
        try:
            event = parse_event(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            continue
        if event is not None:
            events.append(event)
    return events, offset + consumed


class EventFollower:
    """Follows one events file: `poll()` returns the events appended since the previous poll.

    A file that does not exist yet is waited for; a file that shrank (replaced under the reader) is read again
    from the start and `restarted` is set, so a viewer can clear what it showed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.restarted = False

    def poll(self) -> list[Event]:
        """New complete events (possibly none)."""
        try:
            size = self.path.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return []
        self.restarted = size < self.offset
        if self.restarted:
            self.offset = 0
        if size == self.offset:
            return []
        events, self.offset = tail_events(self.path, self.offset)
        return events
