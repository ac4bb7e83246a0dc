"""A second Ctrl-C that lands while the program is already ending (the run stopped gracefully, saved and
recorded) quits at once and quietly: no atexit KeyboardInterrupt traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The real program, with one more exit handler that announces the interpreter's shutdown and then waits in it,
# so the test's second signal lands exactly where a user's late Ctrl-C lands.
PROGRAM = """
import atexit, sys, threading
def shutting_down():
    sys.stderr.write("SHUTTING DOWN\\n"); sys.stderr.flush()
    threading.Event().wait(60)
atexit.register(shutting_down)
from console.cli import main
sys.argv = ["imgcls-console", *sys.argv[1:]]
main()
"""


def test_a_late_second_interrupt_exits_quietly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, "train", "quickstart", "--set", "train.epochs=100000",
                             "--runs-dir", str(tmp_path / "runs")],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:  # the first epoch line: training is under way
        seen.append(line)
        if line.startswith("epoch "):
            break
    proc.send_signal(signal.SIGINT)  # graceful: finish the step, save, record
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("SHUTTING DOWN"):
            break
    else:
        raise AssertionError(f"the program never reached its shutdown: {''.join(seen)}")
    proc.send_signal(signal.SIGINT)  # the late second Ctrl-C
    rest = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert any(line.startswith("run folder:") for line in seen)
