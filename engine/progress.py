"""Progress, cancellation and warnings of a long engine call (evaluation, ensembles), usable from any thread.

No torch here: a UI builds a `Progress` on its own thread, hands it to a worker running the engine call, and
sets `cancel` from the UI thread; the engine checks it between batches and members and raises `Cancelled`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import Cancelled

ProgressCallback = Callable[[str, int, int], None]


@dataclass
class Progress:
    """A progress callback (stage text, done, total), a cancel flag and the warnings collected on the way."""

    callback: ProgressCallback | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    warnings: list[str] = field(default_factory=list)
    log_warnings: bool = True  # also log them (headless callers see them on stderr); a UI showing them turns it off

    def check(self) -> None:
        """Raise `Cancelled` when cancellation was requested."""
        if self.cancel.is_set():
            raise Cancelled("cancelled")

    def report(self, stage: str, done: int, total: int) -> None:
        """Check for cancellation, then tell the callback how far `stage` is."""
        self.check()
        if self.callback is not None:
            self.callback(stage, done, total)

    def prefixed(self, prefix: str) -> Progress:
        """A view of this progress whose stage texts start with `prefix` (same cancel flag, same warnings)."""
        outer = self.callback
        callback = None if outer is None else (lambda stage, done, total: outer(f"{prefix}{stage}", done, total))
        return Progress(callback, self.cancel, self.warnings, self.log_warnings)

    def warn(self, message: str, logger: logging.Logger | None = None) -> None:
        """Collect a warning once (and log it unless `log_warnings` is off)."""
        if message in self.warnings:
            return
        self.warnings.append(message)
        if logger is not None and self.log_warnings:
            logger.warning("%s", message)


def or_default(progress: Progress | None) -> Progress:
    """`progress`, or a silent one that is never cancelled (callers that pass none keep the old behaviour)."""
    return progress if progress is not None else Progress()
