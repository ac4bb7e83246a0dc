"""The Sweeps screen over a real sweep (Optuna study in SQLite, 1-epoch digits trials): list, ranked trials, the
best-so-far chart, Monitor and Evaluate from a trial, live refresh, empty and broken states."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, OptionList, Static

from conftest import write
from console.app import ConsoleApp, create_app
from console.screens.evaluate import EvaluateScreen
from console.screens.monitor import MonitorScreen
from console.screens.sweeps import SweepsScreen
from console.widgets.background_plot import BackgroundPlot
from engine.sweep import create_study, known_sweeps, load_spec, open_named, open_storage, storage_url, summary
from engine.sweep_trials import run_sweep

SPEC = """\
description: three learning rates of the digits quickstart
base: quickstart
params:
  optim.lr: {choices: [0.02, 0.05, 0.1]}
sampler: grid
pruner: none
"""
QUICK = ["train.epochs=1", "data.limit=300"]


def grow_sweep(runs_root: Path, trials: int) -> dict[str, Any]:
    """Run the `digits-lr` sweep (created on first use) until it has `trials` trials; its summary."""
    if "digits-lr" in known_sweeps(runs_root):
        study, spec, _ = open_named(runs_root, "digits-lr", None)
    else:
        spec = load_spec(str(runs_root.parent / "digits-lr.yaml"), QUICK)
        study = create_study(spec, open_storage(storage_url(runs_root, spec.name, None)), QUICK)
    return run_sweep(study, spec, QUICK, runs_root, trials=trials)


@pytest.fixture
def sweep_root(isolated_dirs: Path) -> Path:
    """A runs folder holding the real sweep `digits-lr` with 2 complete trials."""
    write(isolated_dirs / "digits-lr.yaml", SPEC)
    runs_root = isolated_dirs / "runs"
    assert grow_sweep(runs_root, 2)["done"] == 2
    return runs_root


async def open_sweeps(app: ConsoleApp, pilot: Pilot, trials: int | None = None) -> SweepsScreen:
    """The Sweeps screen once it has read the studies (and shows `trials` trials, when given)."""
    screen = app.get_screen("sweeps", SweepsScreen)
    await wait_for(pilot, lambda: screen.loaded and (trials is None or trial_count(screen) == trials))
    return screen


async def wait_for(pilot: Pilot, condition: Any, tries: int = 300) -> None:
    """Pause until `condition()` holds (the poll worker posts its reads as messages)."""
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"condition not met in time on {pilot.app.screen}")


def trial_count(screen: SweepsScreen) -> int:
    """Rows in the trial table."""
    return screen.query_one("#sweeps-trials", DataTable).row_count


def table_rows(screen: SweepsScreen) -> list[list[str]]:
    """The trial table's cells as text."""
    table = screen.query_one("#sweeps-trials", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(screen: SweepsScreen, selector: str) -> str:
    """What a Static of the screen shows."""
    return str(screen.query_one(selector, Static).content)


def test_lists_ranks_and_charts_the_sweep_then_opens_monitor_and_evaluate(sweep_root: Path) -> None:
    ranked = summary(*open_named(sweep_root, "digits-lr", None)[:2])["ranked"]

    async def main() -> None:
        app = create_app(sweep_root, mode="sweeps")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_sweeps(app, pilot, trials=2)
            listed = screen.query_one("#sweeps-list", OptionList)
            assert listed.option_count == 1
            assert "2/2 done" in str(listed.get_option_at_index(0).prompt)
            rows = table_rows(screen)
            assert [row[1] for row in rows] == [str(r["trial"]) for r in ranked]  # ranked as `sweep show`
            assert rows[0][0] == "1 ★" and [row[2] for row in rows] == ["complete", "complete"]
            assert [row[6] for row in rows] == [Path(r["run_dir"]).name for r in ranked]
            assert rows[0][5] == f"lr={ranked[0]['params']['optim.lr']}"
            chart = screen.query_one("#sweeps-chart", BackgroundPlot)
            await wait_for(pilot, lambda: chart.render().plain.count("●") == 2)  # one point per complete trial

            await pilot.press("down", "m")  # the second-ranked trial in Monitor
            await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen))
            assert app.get_screen("monitor", MonitorScreen).selected == Path(ranked[1]["run_dir"]).resolve()

            await pilot.press("f7")
            await pilot.press("up", "enter")  # enter on a trial opens it too
            await wait_for(pilot, lambda: app.get_screen("monitor", MonitorScreen).selected
                           == Path(ranked[0]["run_dir"]).resolve())

            await pilot.press("f7", "e")  # the top complete trials (2 of the top 3) picked in Evaluate
            await wait_for(pilot, lambda: isinstance(app.screen, EvaluateScreen))
            picked = app.get_screen("evaluate", EvaluateScreen).picked
            assert picked == [Path(r["run_dir"]).name for r in ranked[:2]]
            assert any("only 2 complete trials" in str(n.message) for n in app._notifications)

    asyncio.run(main())


def test_a_trial_finished_by_another_worker_shows_after_a_refresh(sweep_root: Path) -> None:
    async def main() -> None:
        app = create_app(sweep_root, mode="runs")
        async with app.run_test(size=(80, 24)) as pilot:
            app.show_sweep("digits-lr")  # as the palette's `Sweep digits-lr` does, before the screen exists
            screen = await open_sweeps(app, pilot, trials=2)
            assert app.screen is screen and screen.current == "digits-lr"
            grown = await asyncio.to_thread(grow_sweep, sweep_root, 3)  # the study's own storage, not the screen's
            await pilot.press("r")
            await wait_for(pilot, lambda: trial_count(screen) == 3)
            assert {row[1] for row in table_rows(screen)} == {"0", "1", "2"}
            assert "3/3 done" in str(screen.query_one("#sweeps-list", OptionList).get_option_at_index(0).prompt)
            best = next(row for row in grown["ranked"] if row["best"])
            assert table_rows(screen)[0][1] == str(best["trial"])
            chart = screen.query_one("#sweeps-chart", BackgroundPlot)
            await wait_for(pilot, lambda: chart.render().plain.count("●") == 3)

    asyncio.run(main())


def test_no_sweeps_says_how_to_start_one_and_a_broken_study_is_one_line(runs_root: Path) -> None:
    async def main() -> None:
        app = create_app(runs_root, mode="sweeps")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_sweeps(app, pilot)
            assert "imgcls-console sweep run quickstart-lr-batch" in text_of(screen, "#sweeps-title")
            assert not screen.query_one("#sweeps-trials").display
            await pilot.press("e")
            assert isinstance(app.screen, SweepsScreen)  # nothing to ensemble: the screen stays

            write(runs_root / "sweeps" / "broken.db", "not a database " * 100)
            await pilot.press("r")
            await wait_for(pilot, lambda: screen.names == ["broken"])
            error = text_of(screen, "#sweeps-error")
            assert error.startswith("sweep broken: cannot read") and error.endswith("file is not a database")
            assert "\n" not in error
            assert "broken  cannot be read" in str(screen.query_one("#sweeps-list", OptionList)
                                                   .get_option_at_index(0).prompt)
            assert text_of(screen, "#sweeps-title") == "sweep broken cannot be read: the reason is below"
            assert not screen.query_one("#sweeps-chart").display

    asyncio.run(main())

