"""The compute process (console.compute): the Launch screen's torch work runs in one child process, so the UI
process never imports torch; engine errors, progress and crashes come back as they would in-process, and the
child ends with the UI process however it ends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from console.app import create_app
from console.compute import ComputeCrashed, ComputeProcess, shared
from console.screens.launch import LaunchScreen
from engine.errors import ConfigError
from tests.ui.test_launch import ready, text_of, type_into, until

REPO = Path(__file__).resolve().parents[2]

# A fresh UI process: open Launch, wait for every preview, report torch and memory, then leave by the console's
# own fast exit (os._exit, as `imgcls-console` does after the app closes).
UI_PROCESS = """
import asyncio, json, sys
import psutil
from console.app import create_app
from console.cli import end_at_once
from console.compute import shared

async def main():
    app = create_app(sys.argv[1])
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        for _ in range(2400):
            if screen.config is not None and {"data", "model", "schedule", "model-presets"} <= set(screen._shown):
                break
            await pilot.pause(0.05)
        return {"shown": sorted(screen._shown), "data": str(screen.query_one("#data-info").content),
                "torch": "torch" in sys.modules, "rss_mb": psutil.Process().memory_info().rss / 2**20,
                "child": shared().pid}

print(json.dumps(asyncio.run(main())), flush=True)
end_at_once(0)
"""


def gone(pid: int, timeout_s: float = 20.0) -> bool:
    """Has process `pid` ended (a zombie nobody reaped counts as ended) within `timeout_s`?"""
    try:
        process = psutil.Process(pid)
        process.wait(timeout=timeout_s)
        return True
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return process.status() == psutil.STATUS_ZOMBIE


def wait_for(condition: Any, what: str, timeout_s: float = 20.0) -> None:
    """Bounded wait for a condition another thread makes true."""
    tick = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        tick.wait(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_calls_run_in_the_child_with_the_ui_processs_environment_and_folder(
        isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compute = ComputeProcess()
    try:
        assert compute.pid is None  # nothing starts before the first call
        child = compute.call("os:getpid")
        assert child == compute.pid and child != os.getpid()
        assert compute.call("os:getcwd") == str(isolated_dirs)
        monkeypatch.setenv("IMGCLS_PRESETS_DIR", str(isolated_dirs / "other-presets"))
        (isolated_dirs / "elsewhere").mkdir()
        monkeypatch.chdir(isolated_dirs / "elsewhere")
        assert compute.call("os:getenv", "IMGCLS_PRESETS_DIR") == str(isolated_dirs / "other-presets")
        assert compute.call("os:getcwd") == str(isolated_dirs / "elsewhere")
        monkeypatch.delenv("IMGCLS_OFFLINE")
        assert compute.call("os:getenv", "IMGCLS_OFFLINE") is None
        assert compute.call("os:getpid") == child  # one child for every call
    finally:
        compute.stop()
    assert compute.pid is None and gone(child)


def test_engine_errors_come_back_as_themselves_progress_reaches_the_caller_and_torch_stays_out(
        isolated_dirs: Path) -> None:
    from engine.presets import resolve_experiment

    with pytest.raises(ConfigError) as here:
        resolve_experiment("quickstart", ["optim.lr=abc"])
    compute = ComputeProcess()
    try:
        with pytest.raises(ConfigError) as there:
            compute.call("engine.presets:resolve_experiment", "quickstart", ["optim.lr=abc"])
        assert str(there.value) == str(here.value) and "\n" not in str(there.value)
        with pytest.raises(ValueError, match=r"^JSONDecodeError: Expecting property name"):  # not an engine error
            compute.call("json:loads", "{]")
        with pytest.raises(RuntimeError, match="torch.* would import torch into the UI process"):
            compute.call("torch:zeros", 2)

        config = resolve_experiment("quickstart", ["data.limit=300"])
        steps: list[tuple[int, int, float]] = []
        threads: set[int] = set()

        def progress(done: int, total: int, lr: float) -> None:
            steps.append((done, total, lr))
            threads.add(threading.get_ident())

        result = compute.call("engine.lr_find:lr_range_test", config, steps=12, progress=progress)
        assert [done for done, _, _ in steps] == list(range(1, len(result["series"]) + 1))
        assert steps[-1][2] == result["series"][-1]["lr"] and threads == {threading.get_ident()}
    finally:
        compute.stop()


def test_a_killed_child_fails_its_calls_in_one_line_and_the_next_call_starts_a_new_one(isolated_dirs: Path) -> None:
    compute = ComputeProcess()
    notices: list[str] = []
    compute.listen(notices.append)
    outcome: dict[str, Any] = {}

    def long_call(key: str, retry: bool) -> None:
        try:
            outcome[key] = compute.call("time:sleep", 60 if not retry else 0.5, retry=retry)
        except ComputeCrashed as exc:
            outcome[key] = exc

    try:
        first = compute.call("os:getpid")
        caller = threading.Thread(target=long_call, args=("cut", False))
        caller.start()
        wait_for(lambda: compute._child is not None and compute._child.pending, "the call in flight")
        os.kill(first, signal.SIGKILL)
        caller.join(timeout=30)
        error = outcome["cut"]
        assert isinstance(error, ComputeCrashed) and "\n" not in str(error)
        assert f"(pid {first}) was killed by SIGKILL while working on this" in str(error)
        assert gone(first) and compute.pid is None and notices == []

        second = compute.call("os:getpid")  # the next request: a new child, and one line saying so
        assert second not in (None, first) and len(notices) == 1
        assert notices[0].startswith(f"the compute process (pid {first}) was killed by SIGKILL")
        assert notices[0].endswith(f"started a new one (pid {second})")

        caller = threading.Thread(target=long_call, args=("retried", True))  # a call without side effects...
        caller.start()
        wait_for(lambda: compute._child is not None and compute._child.pending, "the call in flight")
        os.kill(second, signal.SIGKILL)
        caller.join(timeout=30)
        assert outcome["retried"] is None  # ...is tried once more on the next child, and answers
        assert compute.pid not in (None, first, second) and len(notices) == 2
    finally:
        compute.stop()


def test_launch_previews_keep_torch_out_of_the_ui_process_and_its_exit_ends_the_child(runs_root: Path) -> None:
    out = subprocess.run([sys.executable, "-c", UI_PROCESS, str(runs_root)], cwd=REPO, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["shown"] == ["data", "model", "model-presets", "schedule"]
    assert "train " in report["data"] and report["torch"] is False
    assert report["rss_mb"] < 300, report  # about 700 MB when the previews ran in this process
    assert report["child"] is not None and gone(report["child"])  # left with os._exit: no orphan


# A fresh UI process: open Evaluate on a trained run, evaluate its best checkpoint; validate the quickstart
# experiment in Presets (composing it checks the model: torch); report what was shown, torch and memory.
EVALUATE_PROCESS = """
import asyncio, json, sys
import psutil
from console.app import create_app
from console.cli import end_at_once

async def main():
    app = create_app(sys.argv[1], mode="evaluate")
    async with app.run_test(size=(120, 40)) as pilot:
        app.evaluate_refs([sys.argv[2] + ":best"])
        await pilot.pause()
        screen = app.screen
        await pilot.press("r")
        for _ in range(2400):
            if screen.outcome is not None or "failed" in str(screen.query_one("#eval-stage").content):
                break
            await pilot.pause(0.05)
        report = {"accuracy": screen.outcome.result["accuracy"] if screen.outcome else None,
                  "summary": str(screen.query_one("#eval-summary").content),
                  "pictures": len(screen.query(".wrong-cell"))}
        app.show_preset("experiment", "quickstart")
        await pilot.pause()
        presets = app.screen
        for _ in range(400):
            if presets.current is not None:
                break
            await pilot.pause(0.05)
        await pilot.press("v")
        for _ in range(2400):
            result = str(presets.query_one("#presets-result").content)
            if result.startswith(("OK", "invalid", "Error")) or "error" in presets.query_one("#presets-result").classes:
                break
            await pilot.pause(0.05)
        return {**report, "validated": result, "torch": "torch" in sys.modules,
                "rss_mb": psutil.Process().memory_info().rss / 2**20}

print(json.dumps(asyncio.run(main())), flush=True)
end_at_once(0)
"""


def test_evaluate_and_preset_validation_keep_torch_out_of_the_ui_process(trained_run: Path, runs_root: Path) -> None:
    out = subprocess.run([sys.executable, "-c", EVALUATE_PROCESS, str(runs_root), trained_run.name], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["accuracy"] is not None and f"{100 * report['accuracy']:.2f}%" in report["summary"], report
    assert report["pictures"] > 0  # the wrong images came back drawn, across the process boundary
    assert report["validated"].startswith("OK: ") and "valid experiment preset" in report["validated"], report
    assert report["torch"] is False and report["rss_mb"] < 300, report


def test_a_ui_process_killed_outright_takes_its_child_along(isolated_dirs: Path) -> None:
    code = ("import sys; from console.compute import shared; shared().call('os:getpid'); "
            "print(shared().pid, flush=True); sys.stdin.readline()")
    ui = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True)
    try:
        child = int(ui.stdout.readline())  # type: ignore[union-attr]
        assert psutil.Process(child).ppid() == ui.pid
        ui.kill()
        ui.wait(timeout=30)
        assert gone(child)
    finally:
        ui.kill()
        ui.wait()


def test_launch_recovers_from_a_killed_compute_process(runs_root: Path) -> None:
    async def main() -> None:
        app = create_app(runs_root)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            screen = app.screen
            assert isinstance(screen, LaunchScreen)
            await ready(pilot, screen)
            killed = shared().pid
            assert killed is not None

            def toasts() -> list[str]:
                return [str(toast.render()) for toast in app.screen.query("Toast")]

            os.kill(killed, signal.SIGKILL)  # a call still in flight (model sizes) is retried on a new child
            await type_into(pilot, screen, "#field-optim-lr", "0.02")  # else this request starts the new child
            await until(pilot, lambda: any(f"(pid {killed}) was killed by SIGKILL" in text for text in toasts()),
                        "a toast saying what happened")
            assert any("started a new one" in text for text in toasts()), toasts()
            await until(pilot, lambda: screen.config.optim.lr == 0.02 and "peak lr 0.02" in
                        text_of(screen, "#schedule-info"), "the new lr resolved and previewed")
            assert shared().pid not in (None, killed) and screen.problem is None

            screen.lr_find_steps = 1_000_000  # hours: quitting must not wait for it
            await pilot.press("ctrl+l")
            await until(pilot, lambda: text_of(screen, "#lrfind-info").startswith("step "), "the LR test running")
            busy = shared().pid
            quitting.append(time.monotonic())
        assert busy is not None and gone(busy, timeout_s=5) and shared().pid is None  # stopped with the app

    quitting: list[float] = []
    asyncio.run(main())  # returns once the app's workers have ended
    assert time.monotonic() - quitting[0] < 10  # not the hours of the range test
