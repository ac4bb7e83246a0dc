"""Headless progress: turns training events into a rich progress bar (with ETA) and epoch lines on stderr."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from console.common import fmt_count, fmt_pct, fmt_seconds

REPORTED_BY_THE_COMMAND = ("failed", "diverged")  # end states the commands print themselves, after the run
# Where stderr is not a terminal (nohup, a log file, a batch job) the bars are not drawn: a plain line says how
# far a long epoch or a first decode has come at most this often, so a log never goes quiet for minutes.
PLAIN_EVERY_S = 30.0


class ProgressListener:
    """An event listener for `engine.train`; a context manager that owns the live display."""

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=console, transient=True, disable=quiet,
        )
        self.run_task: Any = None
        self.epoch_task: Any = None
        self.started: dict[str, Any] | None = None
        self.data_task: Any = None
        self.plain = not quiet and not console.is_terminal  # lines in place of bars (see PLAIN_EVERY_S)
        self.plain_every_s = PLAIN_EVERY_S
        self._plain_at = time.monotonic()  # when a line was last printed
        self._epoch = 0

    def _plain_due(self) -> bool:
        """Whether a plain progress line is due (and, if so, that it is being printed now)."""
        now = time.monotonic()
        if not self.plain or now - self._plain_at < self.plain_every_s:
            return False
        self._plain_at = now
        return True

    def __enter__(self) -> ProgressListener:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        handler = getattr(self, f"on_{event['type']}", None)
        if handler is not None and (not self.quiet or event["type"] == "warning"):  # warnings: with --quiet too
            handler(event)

    def on_run_start(self, event: dict[str, Any]) -> None:
        self.started = event  # named when training starts: a new run whose setup fails leaves no folder behind
        for task in (self.run_task, self.epoch_task):  # the run before's bars (k-fold: one listener, K runs)
            if task is not None:
                self.progress.remove_task(task)
        self.run_task = self.epoch_task = None

    def on_data_ready(self, event: dict[str, Any]) -> None:
        if self.data_task is not None:
            self.progress.remove_task(self.data_task)
            self.data_task = None
        counts = event["counts"]
        self.console.print(
            f"data {event['source']}: {event['classes']} classes, {event['image_size']}x{event['image_size']} px, "
            f"{event['channels']} channel{'s' if event['channels'] > 1 else ''}, "
            f"train {counts['train']} / val {counts['val']} / test {counts['test']} ({event['load_s']:.1f}s)",
            highlight=False, soft_wrap=True)

    def on_data_progress(self, event: dict[str, Any]) -> None:
        """Decoding a data set the first time: a transient bar, gone when the data is ready."""
        if self.data_task is None:
            self.data_task = self.progress.add_task(event.get("stage") or "data", total=event["total"], info="")
        self.progress.update(self.data_task, completed=event["done"], total=event["total"])
        if self._plain_due():
            self.console.print(f"  {event.get('stage') or 'data'}: {event['done']}/{event['total']} images",
                               highlight=False, soft_wrap=True)

    def on_model_ready(self, event: dict[str, Any]) -> None:
        self.console.print(f"model {event['model']}: {fmt_count(event['params'])} params, "
                           f"{fmt_count(event['macs'])} MACs/image", highlight=False, soft_wrap=True)

    def on_weights_loaded(self, event: dict[str, Any]) -> None:
        replaced = event.get("replaced") or []
        head = f" (new head: {', '.join(replaced)})" if replaced else ""
        self.console.print(f"weights from {event['source']}{head}", highlight=False, soft_wrap=True)

    def on_backbone(self, event: dict[str, Any]) -> None:
        self.console.print(event["message"], highlight=False, soft_wrap=True)

    def on_epoch_start(self, event: dict[str, Any]) -> None:
        self._plain_at = time.monotonic()  # the first line of an epoch comes a while into it
        self._epoch = event["epoch"]
        if self.started is not None:
            resumed = f" (resumed in epoch {event['epoch']})" if self.started.get("resumed_from") else ""
            self.console.print(f"run [bold]{self.started['name']}[/] in {escape(self.started['run'])}{resumed}",
                               highlight=False, soft_wrap=True)
            self.started = None
        if self.run_task is None:
            self.run_task = self.progress.add_task("run", total=event["epochs"], info="", completed=event["epoch"] - 1)
        if self.epoch_task is not None:
            self.progress.remove_task(self.epoch_task)
        self.epoch_task = self.progress.add_task(f"epoch {event['epoch']}", total=event["steps"], info="")

    def on_step(self, event: dict[str, Any]) -> None:
        if self.epoch_task is not None:
            self.progress.update(self.epoch_task, completed=event["step"],
                                 info=f"loss {event['loss']:.4f} lr {event['lr']:.3g} {event['images_per_s']:.0f} img/s")
        if self._plain_due():
            task = self.progress.tasks[self.epoch_task] if self.epoch_task is not None else None
            left = task.time_remaining if task is not None else None
            eta = f", epoch ends in {fmt_seconds(left)}" if left is not None else ""
            total = f"/{task.total:.0f}" if task is not None and task.total else ""
            self.console.print(f"  epoch {self._epoch} step {event['step']}{total}  loss {event['loss']:.4f}  lr {event['lr']:.3g}  "
                               f"{event['images_per_s']:.0f} img/s{eta}", highlight=False, soft_wrap=True)

    def on_epoch(self, event: dict[str, Any]) -> None:
        self.progress.update(self.run_task, completed=event["epoch"])
        self.console.print(
            f"epoch {event['epoch']:>3}  train loss {event['train_loss']:.4f} acc {fmt_pct(event['train_acc'])}  "
            f"val loss {_num(event['val_loss'])} acc {fmt_pct(event['val_acc'])}  lr {event['lr']:.3g}  "
            f"{event['epoch_s']:.1f}s", highlight=False, soft_wrap=True)

    def on_lr_drop(self, event: dict[str, Any]) -> None:
        self.console.print(f"  lr {event['old_lr']:.3g} -> {event['new_lr']:.3g}", highlight=False, soft_wrap=True)

    def on_test(self, event: dict[str, Any]) -> None:
        self.console.print(f"test ({event['checkpoint']} checkpoint): loss {_num(event['loss'])} "
                           f"acc {fmt_pct(event['acc'])}", highlight=False, soft_wrap=True)

    def on_warning(self, event: dict[str, Any]) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(event['message'])}", highlight=False, soft_wrap=True)

    def on_note(self, event: dict[str, Any]) -> None:
        self.console.print(f"note: {escape(event['message'])}", highlight=False, soft_wrap=True)

    def on_run_end(self, event: dict[str, Any]) -> None:
        """How the run ended; a failure or divergence is left to the command, which reports it once (with
        --quiet too): `train` prints `diverged: REASON`, a failed run's error is its `error:` line."""
        if event["state"] in REPORTED_BY_THE_COMMAND:
            return
        done = event["epochs_done"]
        self.console.print(f"{event['state']} ({event['reason']}) after {done} epoch{'' if done == 1 else 's'}",
                           highlight=False, soft_wrap=True)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)
