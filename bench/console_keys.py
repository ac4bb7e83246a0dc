"""Key press -> repaint in a real terminal: the console runs on a pseudo-terminal, opened on Monitor, while two
quickstart runs train (started as from another terminal and found by Monitor itself); the script writes an arrow
key's bytes and times until the frame holding the newly selected run's name comes back out of the terminal.

    python bench/console_keys.py [--epochs 60] [--out keys.json]

This is what a person at the keyboard waits for (input parsing, the handler, layout, the frame written), where
bench/console.py's figure goes through Textual's headless pilot and waits for the charts too. The selected run's
full name appears only in Monitor's title line (the side list wraps it at its timestamp).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.console import p95  # noqa: E402 - after the checkout is on the path

APP = "import sys; from console.app import create_app; create_app(sys.argv[1], mode='monitor').run()"


class Terminal:
    """The app on a pseudo-terminal of `columns` x `lines`; every byte it writes kept with its arrival time."""

    def __init__(self, runs: Path, columns: int = 120, lines: int = 40) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        self.process = subprocess.Popen([sys.executable, "-P", "-c", APP, str(runs)], stdin=slave, stdout=slave,
                                        stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self.arrivals: list[tuple[float, int]] = []  # (time, output length after the chunk)
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.output.extend(data)
                self.arrivals.append((time.perf_counter(), len(self.output)))

    def mark(self) -> int:
        with self.lock:
            return len(self.output)

    def wait_for(self, text: str, start: int, timeout: float) -> float | None:
        """When `text` was complete in the output written after offset `start`; None if not within `timeout`."""
        target, deadline = text.encode(), time.perf_counter() + timeout
        while True:
            with self.lock:
                found = self.output.find(target, start)
                if found >= 0:
                    return next(t for t, n in self.arrivals if n >= found + len(target))
            if time.perf_counter() >= deadline:
                return None
            time.sleep(0.001)

    def last_of(self, texts: list[str]) -> str:
        """Which of `texts` was written last."""
        with self.lock:
            return max(texts, key=lambda t: self.output.rfind(t.encode()))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self.send(b"\x11")  # ctrl+q
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def measure(epochs: int) -> dict:
    from engine.launch import launch_run
    from engine.presets import resolve_experiment
    from engine.provenance import commit_label

    work = Path(tempfile.mkdtemp(prefix="bench-keys-"))
    os.environ.setdefault("IMGCLS_DATA_DIR", str(work / "data"))
    runs = work / "runs"
    terminal = Terminal(runs)
    if terminal.wait_for("No run followed", 0, 60) is None:
        raise SystemExit("the app did not open within 60 s")
    handles = [launch_run(resolve_experiment("quickstart", [f"train.epochs={epochs}", "train.log_every=5",
                                                            f"name={name}"]), runs) for name in ("alpha", "beta")]
    names = [h.run_dir.name for h in handles]
    deadline = time.perf_counter() + 60
    while not any(terminal.wait_for(n, 0, 0) for n in names) and time.perf_counter() < deadline:
        time.sleep(0.05)
    time.sleep(2.5)  # Monitor scans every 2 s: both runs are followed
    latencies: list[float] = []
    up, misses = True, 0
    while all(h.poll() is None for h in handles):
        target = next(n for n in names if n != terminal.last_of(names))
        start, clock = terminal.mark(), time.perf_counter()
        terminal.send(b"\x1b[A" if up else b"\x1b[B")
        shown = terminal.wait_for(target, start, 1.0)
        if shown is None:
            misses += 1  # the key went past the end of the list: the other direction next
        else:
            latencies.append(shown - clock)
        up = not up
        time.sleep(0.25)
    terminal.close()
    for handle in handles:
        handle.wait(60)
    return {"presses": len(latencies), "missed": misses, "median_s": statistics.median(latencies),
            "p95_s": p95(latencies), "max_s": max(latencies),
            "terminal": "120x40 pty", "epochs": epochs, "cores": os.cpu_count(), "commit": commit_label(),
            "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = json.dumps(measure(args.epochs), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
