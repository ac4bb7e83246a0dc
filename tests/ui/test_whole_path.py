"""The whole path in one app, as a user drives it: compose quickstart -> Start -> the charts receive points ->
the run finishes -> evaluate its best checkpoint with TTA -> ensemble it with a second run -> results shown."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.widgets import Select, Static

from console.app import create_app
from console.screens.evaluate import EvaluateScreen
from console.screens.evaluate_parts import CheckpointTree
from console.screens.launch import LaunchScreen
from console.screens.monitor import MonitorScreen
from console.widgets.background_plot import BackgroundPlot


async def _until(pilot: Any, condition: Any, seconds: float = 180.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


def test_compose_start_watch_evaluate_and_ensemble(runs_root: Path, second_run: Path) -> None:
    from engine.ensemble import evaluate_checkpoint, evaluate_ensemble
    from engine.members import EvalOptions, parse_ref

    async def main() -> None:
        app = create_app(runs_root)  # opens on Launch with quickstart composed
        async with app.run_test(size=(120, 40)) as pilot:
            launch = app.screen
            assert isinstance(launch, LaunchScreen)
            app.launch_experiment("quickstart", ["train.epochs=3"])
            await _until(pilot, lambda: launch.config is not None and launch.config.train.epochs == 3
                         and launch.problem is None)
            await pilot.press("ctrl+r")
            await _until(pilot, lambda: app.current_mode == "monitor")
            monitor = app.get_screen("monitor", MonitorScreen)
            run_dir = launch.last_launch.run_dir.resolve()
            model = monitor.models[run_dir]
            await _until(pilot, lambda: len(model.step_x) > 0)  # the charts receive points while it trains
            await _until(pilot, lambda: model.state == "finished" and model.test_acc is not None)
            assert sorted(model.rows) == [1, 2, 3]
            loss_chart = monitor.query_one("#loss", BackgroundPlot)
            await _until(pilot, lambda: "•" in str(loss_chart.render()))  # the per-epoch train and val points
            legend = str(monitor.query_one("#legend", Static).render())
            assert "train" in legend and "val" in legend

            # evaluate the best checkpoint with flip TTA, from Monitor's `e`
            await pilot.press("e")
            await _until(pilot, lambda: app.current_mode == "evaluate")
            evaluate = app.get_screen("evaluate", EvaluateScreen)
            assert evaluate.picked == [run_dir.name]  # as Evaluate lists it: marked picked in its tree...
            tree = evaluate.query_one(CheckpointTree)
            await _until(pilot, lambda: tree.cursor_node is not None and tree.cursor_node.data == run_dir.name)
            assert str(tree.cursor_node.label).startswith("●")  # ...with the cursor on it
            evaluate.query_one("#eval-split", Select).value = "test"
            evaluate.query_one("#eval-tta", Select).value = "flip"
            evaluate.query_one("#eval-combine", Select).value = "logits"
            await pilot.press("r")
            await _until(pilot, lambda: evaluate.outcome is not None)
            options = EvalOptions(split="test", tta="flip")
            expected = evaluate_checkpoint(parse_ref(runs_root, f"{run_dir}:best"), options, "logits")
            assert abs(evaluate.outcome.result["accuracy"] - expected["accuracy"]) < 1e-9
            assert f"{100 * expected['accuracy']:.2f}%" in str(evaluate.query_one("#eval-summary").render())

            # ensemble it with the second run
            app.evaluate_refs([f"{run_dir}:best", f"{second_run.name}:best"])
            await pilot.pause()
            evaluate.outcome = None
            await pilot.press("r")
            await _until(pilot, lambda: evaluate.outcome is not None)
            refs = [parse_ref(runs_root, f"{run_dir}:best"), parse_ref(runs_root, f"{second_run.name}:best")]
            ensemble = evaluate_ensemble(refs, options, "logits")
            assert abs(evaluate.outcome.result["accuracy"] - ensemble["accuracy"]) < 1e-9
            assert len(evaluate.outcome.result["member_metrics"]) == 2

    asyncio.run(main())
