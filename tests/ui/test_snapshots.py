"""SVG snapshots of every screen at 80x24 and 120x40 (pytest-textual-snapshot).

The runs shown are a recorded real run (tests/ui/data: its config, status and events, no checkpoints), so the
pictures do not change from one training to the next. Update after a deliberate change with
`python3 -m pytest tests/ui/test_snapshots.py --snapshot-update`, and look at the SVGs before committing them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable
from textual.worker import WorkerCancelled

from console.app import create_app
from console.screens.monitor import MonitorScreen
from console.widgets.background_plot import BackgroundPlot

DATA = Path(__file__).parent / "data"
SIZES = [(80, 24), (120, 40)]
RUN = "quickstart-20260101-090000"


@pytest.fixture
def recorded_runs(isolated_dirs: Path) -> Path:
    """`runs/` (relative: the working directory is the test's folder) holding the recorded run."""
    shutil.copytree(DATA, isolated_dirs / "runs")
    return Path("runs")


async def _settle(pilot: Any, *, long_lived: bool = False) -> None:
    """Let workers finish (they may start others) and the screen repaint. Monitor's poller never finishes."""
    for _ in range(6):
        if not long_lived:
            try:
                await pilot.app.workers.wait_for_complete()
            except WorkerCancelled:  # an exclusive worker superseded by a newer one (the newer one is awaited next)
                pass
        await pilot.pause(0.2)
    for _ in range(100):  # a DataTable sizes its columns for new rows when it next goes idle: wait for that,
        screen = pilot.app.screen  # and for the charts built in workers to be shown
        if not any(table._require_update_dimensions for table in screen.query(DataTable)) and not any(
                plot.pending for plot in screen.query(BackgroundPlot)):
            break
        await pilot.pause(0.05)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_launch(snap_compare: Any, recorded_runs: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        screen = pilot.app.screen
        for _ in range(400):  # the composition resolved and the model/schedule previews shown
            if screen.config is not None and screen._model_cost is not None:
                break
            await pilot.pause(0.05)
        await _settle(pilot)

    assert snap_compare(create_app(recorded_runs, mode="launch"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_monitor(snap_compare: Any, recorded_runs: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        app.monitor_run(recorded_runs / RUN)
        monitor = app.get_screen("monitor", MonitorScreen)
        model = monitor.models[(recorded_runs / RUN).resolve()]
        for _ in range(400):
            if model.state == "finished" and monitor.query_one("#epochs").row_count == 4:
                break
            await pilot.pause(0.05)
        monitor.query_one("#device").display = False  # this machine's CPU load is not part of the picture
        await _settle(pilot, long_lived=True)

    assert snap_compare(create_app(recorded_runs, mode="monitor"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs(snap_compare: Any, recorded_runs: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        for _ in range(400):  # the runs read (on a busy machine they came after settling, unsized in the picture)
            if pilot.app.screen.loaded:
                break
            await pilot.pause(0.05)
        await _settle(pilot)
        table = pilot.app.screen.query_one("#runs-table", DataTable)
        for _ in range(100):  # and drawn at their measured widths (seen once cut to the headers' under load)
            if RUN in table.render_line(1).text:
                break
            await pilot.pause(0.05)

    assert snap_compare(create_app(recorded_runs, mode="runs"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_evaluate(snap_compare: Any, recorded_runs: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:  # nothing picked: the picker as it opens (expanding is async)
        await _settle(pilot)

    assert snap_compare(create_app(recorded_runs, mode="evaluate"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_presets(snap_compare: Any, recorded_runs: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        pilot.app.show_preset("experiment", "quickstart")
        await _settle(pilot)

    assert snap_compare(create_app(recorded_runs, mode="presets"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare: Any, recorded_runs: Path, size: tuple[int, int]) -> None:
    assert snap_compare(create_app(recorded_runs, mode="runs"), terminal_size=size, press=["f1"],
                        run_before=lambda pilot: _settle(pilot))
