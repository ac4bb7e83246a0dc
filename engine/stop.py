"""Stopping gracefully: a request set by signal handlers or by a stop file another process writes. Torch-free, so a
process that only coordinates others (a sweep's parent, the console) can use it without importing torch."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StopRequest:
    """Set by signal handlers, or by a stop file another process writes (`engine.launch.request_stop`);
    the training loop polls it after every step (the file at most every `file_poll_s` seconds)."""

    signal_number: int = 0
    count: int = 0
    previous: dict[int, Any] = field(default_factory=dict)
    stop_file: Any = None  # a Path whose appearance asks for a graceful stop
    file_poll_s: float = 0.25
    by_file: bool = False
    _next_check: float = 0.0

    @property
    def requested(self) -> bool:
        if self.count > 0:
            return True
        if self.stop_file is not None:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + self.file_poll_s
                if os.path.exists(self.stop_file):
                    self.by_file = True
                    self.count = 1
                    return True
        return False

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal_number or signal.SIGINT)

    def describe(self) -> str:
        """What asked for the stop, for the run's status."""
        if self.by_file and not self.signal_number:
            return "stopped on request (stop file)"
        return f"stopped by signal {self.signal_number}"


def install_stop_handlers(stop: StopRequest) -> None:
    """First SIGINT/SIGTERM: finish the step and save; a second one raises KeyboardInterrupt at once."""

    def handler(signum: int, frame: Any) -> None:
        stop.count += 1
        stop.signal_number = stop.signal_number or signum
        if stop.count > 1:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        stop.previous[sig] = signal.signal(sig, handler)


def restore_stop_handlers(stop: StopRequest) -> None:
    """Put back the handlers that were there before `install_stop_handlers`."""
    for sig, previous in stop.previous.items():
        signal.signal(sig, previous)
    stop.previous.clear()
