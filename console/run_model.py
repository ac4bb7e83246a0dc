"""What a viewer knows of one run, built from its events (no UI, no torch): series for the charts, the epoch
table, progress and ETA, warnings and the error of a run that failed."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_STEP_POINTS = 600  # step series are thinned to this many points for drawing


@dataclass
class RunModel:
    """One followed run: `apply` each event in order; everything shown is derived from these fields."""

    run_dir: Path
    state: str = "unknown"
    epochs: int = 0
    steps_per_epoch: int = 0
    epoch: int = 0
    step: int = 0
    step_x: list[float] = field(default_factory=list)  # fractional epochs
    step_loss: list[float] = field(default_factory=list)
    step_lr: list[float] = field(default_factory=list)
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    lr_drops: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    reason: str | None = None
    images_per_s: float | None = None
    test_acc: float | None = None
    data: str = ""
    model: str = ""
    model_preset: str = ""  # the preset the run started from (status.json), when recorded
    params: int | None = None
    started: float | None = None
    session_start: float | None = None
    session_first_epoch: int = 0
    last_event: float | None = None
    checkpoints: dict[str, int] = field(default_factory=dict)
    best_metric: str | None = None  # what picked the `best` checkpoint (val_loss, val_acc), when told
    loading: str | None = None  # data decoding progress before the first epoch
    # Bumped by what changes the charts: a viewer redraws a chart only when the revisions it depends on moved.
    step_revision: int = 0  # the step series
    epoch_revision: int = 0  # the epoch rows, LR drops and checkpoints (the charts' marks)

    @property
    def name(self) -> str:
        return self.run_dir.name

    def apply_all(self, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one event into the model (unknown types are ignored)."""
        self.last_event = float(event.get("time", time.time()))
        handler = getattr(self, f"_on_{event['type']}", None)
        if handler is not None:
            handler(event)

    def _on_run_start(self, event: Mapping[str, Any]) -> None:
        self.state, self.error, self.reason = "running", None, None
        self.warnings = []  # those of this session (a refused resume's, before it, said what is now past)
        self.session_start = float(event.get("time", time.time()))
        self.started = self.started or self.session_start
        self.session_first_epoch = self.epoch

    def _on_data_progress(self, event: Mapping[str, Any]) -> None:
        total = max(int(event["total"]), 1)
        self.loading = f"{event.get('stage') or 'loading data'} {100 * int(event['done']) / total:.0f}%"

    def _on_data_ready(self, event: Mapping[str, Any]) -> None:
        self.loading = None
        self.data = f"{event['source']} · {event['classes']} classes · {event['image_size']} px"

    def _on_model_ready(self, event: Mapping[str, Any]) -> None:
        self.model, self.params = str(event["model"]), int(event["params"])

    def _on_epoch_start(self, event: Mapping[str, Any]) -> None:
        self.epochs, self.steps_per_epoch = int(event["epochs"]), int(event["steps"])
        self.epoch = int(event["epoch"]) - 1

    def _on_step(self, event: Mapping[str, Any]) -> None:
        self.step = int(event["step"])
        steps = max(self.steps_per_epoch, 1)
        x = int(event["epoch"]) - 1 + self.step / steps
        while self.step_x and self.step_x[-1] >= x:  # a resumed run re-trains from its checkpoint: drop the rest
            self.step_x.pop(), self.step_loss.pop(), self.step_lr.pop()
        self.step_x.append(x)
        self.step_loss.append(float(event["loss"]))
        self.step_lr.append(float(event["lr"]))
        if event.get("images_per_s") is not None:
            self.images_per_s = float(event["images_per_s"])
        self.step_revision += 1

    def _on_epoch(self, event: Mapping[str, Any]) -> None:
        row = dict(event)
        self.epoch = int(row["epoch"])
        self.rows = {k: v for k, v in self.rows.items() if k < self.epoch}
        self.rows[self.epoch] = row
        self.step = 0
        self.epoch_revision += 1

    def _on_lr_drop(self, event: Mapping[str, Any]) -> None:
        self.lr_drops.append(float(event["epoch"]))
        self.epoch_revision += 1

    def _on_checkpoint(self, event: Mapping[str, Any]) -> None:
        self.checkpoints[str(event["name"])] = int(event["epoch"])
        if event.get("metric"):
            self.best_metric = str(event["metric"])
        self.epoch_revision += 1

    def _on_warning(self, event: Mapping[str, Any]) -> None:
        self.warnings.append(str(event["message"]))

    def _on_test(self, event: Mapping[str, Any]) -> None:
        self.test_acc = float(event["acc"])

    def _on_stop_requested(self, event: Mapping[str, Any]) -> None:
        self.state = "stopping"

    def _on_run_end(self, event: Mapping[str, Any]) -> None:
        self.state = str(event["state"])
        self.reason = event.get("reason")
        if self.state in ("failed", "diverged"):
            self.error = str(self.reason)

    def apply_status(self, status: Mapping[str, Any]) -> None:
        """Take what only status.json knows (a killed process, a run that never wrote an event)."""
        state = str(status.get("state", "unknown"))
        if status.get("process_gone") and self.state in ("running", "stopping", "starting"):
            self.state, self.reason = state, status.get("reason")  # killed: no run_end will come
        elif self.state == "unknown":
            self.state = state
            self.reason = status.get("reason")
            if state in ("failed", "diverged"):
                self.error = str(status.get("reason"))
        if not self.epochs and isinstance(status.get("epochs"), int):
            self.epochs = int(status["epochs"])
        if isinstance(status.get("model_preset"), str):
            self.model_preset = status["model_preset"]

    # --- derived values ---

    @property
    def best(self) -> tuple[int, float] | None:
        """(epoch, val acc) of the best validation accuracy so far."""
        scored = [(e, r["val_acc"]) for e, r in self.rows.items() if isinstance(r.get("val_acc"), (int, float))
                  and r["val_acc"] == r["val_acc"]]
        return max(scored, key=lambda item: item[1]) if scored else None

    @property
    def fraction(self) -> float:
        """How much of the run is done, 0..1."""
        if not self.epochs:
            return 0.0
        within = self.step / self.steps_per_epoch if self.steps_per_epoch else 0.0
        return min(1.0, (self.epoch + within) / self.epochs)

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at this session's pace (None before an epoch or while not training)."""
        if self.state != "running" or self.session_start is None or not self.epochs:
            return None
        done = self.fraction * self.epochs - self.session_first_epoch
        if done <= 0.05:
            return None
        elapsed = (now or time.time()) - self.session_start
        return elapsed / done * (self.epochs * (1 - self.fraction))

    def thinned_steps(self) -> tuple[list[float], list[float], list[float]]:
        """The step series with at most MAX_STEP_POINTS points (every k-th, the last one kept)."""
        count = len(self.step_x)
        if count <= MAX_STEP_POINTS:
            return self.step_x, self.step_loss, self.step_lr
        k = -(-count // MAX_STEP_POINTS)
        keep = list(range(0, count, k))
        if keep[-1] != count - 1:
            keep.append(count - 1)
        return ([self.step_x[i] for i in keep], [self.step_loss[i] for i in keep], [self.step_lr[i] for i in keep])


def last_good_checkpoint(run_dir: Path) -> str | None:
    """`name (epoch N)` of the newest complete checkpoint of a run."""
    from engine.runs import saved_checkpoints

    found = saved_checkpoints(run_dir)
    return f"{found[0][0]} (epoch {found[0][1]})" if found else None
