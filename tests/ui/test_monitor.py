"""Monitor: follows launched and headless runs live, shows failures, stops and resumes from the app."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from textual.widgets import Input

from console.app import create_app
from console.screens.monitor import MonitorScreen
from console.screens.runs_dialogs import EpochsDialog
from engine.launch import launch_run
from engine.presets import resolve_experiment


async def _until(pilot: Any, condition: Any, seconds: float = 240.0) -> None:
    """Let the app run until `condition()` holds (each pause lets queued messages through)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


def _monitor(app: Any) -> MonitorScreen:
    return app.get_screen("monitor", MonitorScreen)


def test_a_headless_run_is_found_and_followed_to_its_end(runs_root: Path) -> None:
    """A run started from another terminal while the app is open on Monitor is found without being opened (a run
    already training when the app opens is found by the same scan: tests/test_launch.py)."""
    processes: list[subprocess.Popen[bytes]] = []

    async def main() -> None:
        app = create_app(runs_root, mode="monitor")
        async with app.run_test(size=(120, 40)) as pilot:
            monitor = _monitor(app)
            await _until(pilot, lambda: monitor._running_runs is not None)  # the first scan saw an empty folder
            processes.append(subprocess.Popen([sys.executable, "-m", "console.cli", "train", "quickstart", "--quiet",
                                               "--set", "train.epochs=3"],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            await _until(pilot, lambda: len(monitor.followed) == 1, 120)  # 3 epochs may end between two scans
            run_dir = next(runs_root.iterdir())
            assert monitor.selected == run_dir.resolve()
            model = monitor.models[run_dir.resolve()]
            await _until(pilot, lambda: model.state == "finished" and model.test_acc is not None)
            assert sorted(model.rows) == [1, 2, 3] and model.step_x
            assert model.best_metric == "val_loss"  # quickstart's: the title says what picked `best`
            await _until(pilot, lambda: "finished" in str(monitor.query_one("#title").render()))
            await _until(pilot, lambda: monitor.query_one("#epochs").row_count == 3)  # charts follow at 2 Hz
            # what trains, named as Launch and Runs name it: the preset, then its architecture
            await _until(pilot, lambda: "8 px · small-cnn (convnet) · 21.5K params" in str(
                monitor.query_one("#messages").render()), 5)
            processes[0].wait(120)  # the run's process gone too: nothing writes into the folder any more
            shutil.rmtree(run_dir)  # deleted (from Runs, or a shell): no longer listed as followed
            await _until(pilot, lambda: not monitor.followed and "No run followed" in str(
                monitor.query_one("#title").render()), 10)

    try:
        asyncio.run(main())
    finally:
        for process in processes:
            assert process.wait(120) == 0, process.stderr.read() if process.stderr else ""


def test_stop_then_resume_from_the_app(runs_root: Path) -> None:
    handle = launch_run(resolve_experiment("quickstart", ["train.epochs=8"]), runs_root)

    async def main() -> None:
        app = create_app(runs_root, mode="monitor")
        async with app.run_test(size=(120, 40)) as pilot:
            app.monitor_run(handle.run_dir, handle)
            monitor = _monitor(app)
            await _until(pilot, lambda: app.current_mode == "monitor")
            model = monitor.models[handle.run_dir.resolve()]
            await _until(pilot, lambda: len(model.rows) >= 1)
            await pilot.press("s")
            await _until(pilot, lambda: model.state == "interrupted")
            stopped = model.epoch
            assert 1 <= stopped < 8 and handle.wait(60) == 130
            await pilot.press("r")
            await _until(pilot, lambda: model.state == "finished" and model.test_acc is not None, 300)
            assert sorted(model.rows) == list(range(1, 9))

            await pilot.press("r")  # finished all its epochs: asks how many in all, and trains it further
            await _until(pilot, lambda: isinstance(app.screen, EpochsDialog))
            dialog = app.screen
            dialog.query_one("#epochs-input", Input).value = "8"
            await pilot.press("enter")  # not more than it has: refused in place
            assert app.screen is dialog and "more than 8" in str(dialog.query_one("#dialog-error").render())
            dialog.query_one("#epochs-input", Input).value = "10"
            await pilot.press("enter")
            await _until(pilot, lambda: model.epochs == 10 or model.state == "running", 60)
            await _until(pilot, lambda: model.state == "finished" and sorted(model.rows) == list(range(1, 11)), 300)
            assert "resume refused" not in (handle.run_dir / "events.jsonl").read_text()

    asyncio.run(main())


def test_a_failing_run_shows_its_error_and_the_app_stays_up(runs_root: Path, isolated_dirs: Path) -> None:
    root = isolated_dirs / "images"
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((12, 12, 3), 40 * c + i, np.uint8)).save(root / name / f"{i}.png")
    (root / "dog" / "broken.png").write_bytes(b"not an image")
    config = resolve_experiment("quickstart", ["data=folder-40px", f"data.root={root}", "data.image_size=8"])
    handle = launch_run(config, runs_root)

    async def main() -> None:
        app = create_app(runs_root, mode="monitor")
        async with app.run_test(size=(80, 24)) as pilot:
            app.monitor_run(handle.run_dir, handle)
            monitor = _monitor(app)
            await _until(pilot, lambda: app.current_mode == "monitor")
            model = monitor.models[handle.run_dir.resolve()]
            await _until(pilot, lambda: model.state == "failed")
            await _until(pilot, lambda: "broken.png" in str(monitor.query_one("#messages").render()))
            assert "no checkpoint was saved" in str(monitor.query_one("#messages").render())
            await pilot.press("f4")  # the app is still up and answers
            assert app.current_mode == "runs"

    asyncio.run(main())


def test_the_title_gives_best_val_as_runs_does_and_a_higher_val_elsewhere() -> None:
    """`best val` is the val acc of the best checkpoint (Runs' and `runs list`'s column), first; a higher val acc at
    another epoch follows as `top val`."""
    from console.run_model import RunModel

    model = RunModel(Path("/runs/r18-flip-20260101-000000"))
    model.apply_all([{"type": "epoch", "time": 1.0, "epoch": 1, "val_acc": 0.3681, "val_loss": 2.0},
                     {"type": "epoch", "time": 2.0, "epoch": 2, "val_acc": 0.3542, "val_loss": 1.9},
                     {"type": "checkpoint", "time": 2.0, "name": "best", "epoch": 2, "metric": "val_loss"},
                     {"type": "test", "time": 3.0, "acc": 0.35, "loss": 2.0}])
    screen = MonitorScreen()
    assert screen._title(model)[3:] == ["best val 35.42% (ep 2, by val loss)", "test 35.00%",
                                        "top val 36.81% (ep 1)"]
    model.apply({"type": "checkpoint", "time": 4.0, "name": "best", "epoch": 1, "metric": "val_acc"})
    assert screen._title(model)[3:] == ["best val 36.81% (ep 1)", "test 35.00%"]  # the top one: said once


def test_title_parts_wrap_whole_at_the_title_width() -> None:
    from console.screens.monitor import pack_parts

    parts = ["[b]run-20260101-000000[/b]", "[blue]✓[/] finished", "epoch 15/15", "top val 100.00% (ep 4)",
             "best ckpt ep 12 (val loss)"]
    lines = pack_parts(parts, 54).split("\n")
    assert lines == ["[b]run-20260101-000000[/b] · [blue]✓[/] finished · epoch 15/15",
                     "top val 100.00% (ep 4) · best ckpt ep 12 (val loss)"]  # markup does not count
    narrow = pack_parts(parts, 40).split("\n")  # a part that does not fit goes whole to the next line
    assert narrow[1:] == ["epoch 15/15 · top val 100.00% (ep 4)", "best ckpt ep 12 (val loss)"]
    assert pack_parts(parts, 0) == " · ".join(parts)  # not laid out yet


def test_a_long_run_name_loses_its_middle_in_the_side_panel() -> None:
    from console.screens.monitor import _run_label

    assert _run_label("✓", "quickstart-lr-batch-t1-20261203-162132", 18) == (
        "✓ quicksta…atch-t1\n  [dim]20261203-162132[/]")  # the trial's number stays
    assert _run_label("✓", "quickstart-20261203-162108", 20) == "✓ quickstart\n  [dim]20261203-162108[/]"
    assert _run_label("✓", "quickstart-lr-batch-t1-20261203-162132", 0).startswith("✓ quickstart-lr-batch-t1\n")


def test_the_app_opening_on_launch_says_which_runs_are_training(runs_root: Path, capsys: Any) -> None:
    """Closed while a run trained, opened again: Launch is shown, and a notice says what trains and F3 shows it;
    closed again, the shell is told that it goes on."""
    from console.cli import say_still_training
    from engine.launch import request_stop

    handle = launch_run(resolve_experiment("quickstart", ["train.epochs=400", "data.limit=300"]), runs_root)

    async def main() -> None:
        app = create_app(runs_root, mode="launch")
        async with app.run_test(size=(80, 24)) as pilot:
            await _until(pilot, lambda: any("training now" in n.message for n in app._notifications), 60)
            notice = next(n.message for n in app._notifications if "training now" in n.message)
            assert notice == f"1 training now ({handle.run_dir.name}): F3 shows it in Monitor"
            assert app.current_mode == "launch"

    try:
        asyncio.run(main())
        capsys.readouterr()
        say_still_training(runs_root)  # what `imgcls-console` prints once the app has closed
        assert capsys.readouterr().out == f"1 still training ({handle.run_dir.name}): `imgcls-console` shows it again\n"
    finally:
        request_stop(handle.run_dir)
        assert handle.wait(120) is not None


def test_the_cpu_load_is_not_shown_before_there_is_a_reading(monkeypatch: Any) -> None:
    """psutil's first cpu_percent() compares with nothing and says 0.0: the panel waits for the second."""
    import re

    from console import device

    monkeypatch.setattr(device, "_CPU_SAMPLED", False)
    assert device.device_summary().startswith("CPU … · RAM ")
    assert re.match(r"CPU \d+% · RAM ", device.device_summary())
