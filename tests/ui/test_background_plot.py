"""Monitor's charts: built from a copy of a run's data, in a worker, shown when built; redrawn on resize; a
figure plotext cannot draw says so in its place."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult

from console.run_charts import ChartData, draw_acc, draw_loss
from console.run_model import RunModel
from console.widgets.background_plot import BackgroundPlot


def _model() -> RunModel:
    model = RunModel(Path("runs/quickstart-20260101-090000"))
    model.apply({"type": "epoch_start", "epoch": 1, "epochs": 2, "steps": 4})
    for step in range(1, 5):
        model.apply({"type": "step", "epoch": 1, "step": step, "loss": 2.0 / step, "lr": 0.1})
    model.apply({"type": "epoch", "epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "train_acc": 0.7, "val_acc": 0.75})
    model.apply({"type": "checkpoint", "name": "best", "epoch": 1})
    return model


def test_chart_data_is_a_copy_and_revisions_count_what_charts_show() -> None:
    model = _model()
    assert (model.step_revision, model.epoch_revision) == (4, 2)  # 4 steps; an epoch and a checkpoint
    data = ChartData.of(model)
    model.apply({"type": "epoch_start", "epoch": 2, "epochs": 2, "steps": 4})
    model.apply({"type": "step", "epoch": 2, "step": 1, "loss": 0.5, "lr": 0.01})
    model.apply({"type": "lr_drop", "epoch": 1.5})
    assert (model.step_revision, model.epoch_revision) == (5, 3)
    assert len(data.step_x) == 4 and data.lr_drops == () and data.best_epoch == 1  # the copy did not grow
    assert [epoch for epoch, _ in data.epochs] == [1]


class _Charts(App[None]):
    CSS = "BackgroundPlot { height: 12; }"

    def compose(self) -> ComposeResult:
        yield BackgroundPlot(id="chart")


async def _until(pilot: Any, condition: Any) -> None:
    for _ in range(400):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached")


def test_a_chart_is_built_in_a_worker_and_redrawn_at_a_new_size_and_theme() -> None:
    async def main() -> None:
        app = _Charts()
        async with app.run_test(size=(60, 20)) as pilot:
            chart = app.query_one(BackgroundPlot)
            assert not chart.pending and chart.render().plain == ""  # nothing drawn yet
            chart.draw(lambda plt: draw_loss(plt, ChartData.of(_model())))
            assert chart.pending
            await _until(pilot, lambda: not chart.pending)
            text = chart.render().plain
            assert "loss" in text and "◆" in text  # the title, and the val point of the best checkpoint's epoch
            assert max(len(line) for line in text.splitlines()) == 60
            await pilot.resize_terminal(90, 20)
            await _until(pilot, lambda: chart.size.width == 90 and not chart.pending)
            assert max(len(line) for line in chart.render().plain.splitlines()) == 90
            before = chart.render_line(1)
            app.theme = "textual-light"  # the figure's colours follow the theme: built again
            await _until(pilot, lambda: chart.render_line(1) is not before and not chart.pending)
            after = chart.render_line(1)
            assert after.text == before.text and [s.style for s in after] != [s.style for s in before]

    asyncio.run(main())


def test_a_figure_that_cannot_be_drawn_says_so_and_the_app_stays_up() -> None:
    def broken(plt: Any) -> None:
        raise ValueError("no data to scale")

    async def main() -> None:
        app = _Charts()
        async with app.run_test(size=(60, 20)) as pilot:
            chart = app.query_one(BackgroundPlot)
            chart.draw(broken)
            await _until(pilot, lambda: not chart.pending)
            assert chart.render().plain == "chart not drawn: no data to scale"
            chart.draw(lambda plt: draw_acc(plt, ChartData.of(_model(), steps=False)))  # the next one is drawn
            await _until(pilot, lambda: not chart.pending)
            assert "accuracy" in chart.render().plain

    asyncio.run(main())


def test_builds_slower_than_the_data_still_show_the_newest_finished_one() -> None:
    """On a busy machine a build can take longer than the next data takes to come: the charts must not stay empty
    until the data stops (each finished build newer than the one shown is shown)."""

    def slow(plt: Any, value: int) -> None:
        time.sleep(0.15)  # a build slower than the draws below come
        plt.clear_figure()
        plt.title(f"figure {value}")

    async def main() -> None:
        app = _Charts()
        async with app.run_test(size=(60, 20)) as pilot:
            chart = app.query_one(BackgroundPlot)
            shown_while_streaming = None
            for value in range(30):  # a new drawing every 0.05 s for 1.5 s
                chart.draw(lambda plt, value=value: slow(plt, value))
                await pilot.pause(0.05)
                if shown_while_streaming is None and "figure" in chart.render().plain:
                    shown_while_streaming = value
            assert shown_while_streaming is not None and shown_while_streaming < 29
            await _until(pilot, lambda: not chart.pending)
            assert "figure 29" in chart.render().plain  # and the last one once the data stops

    asyncio.run(main())


def test_the_epoch_axis_is_labelled_with_whole_epochs() -> None:
    rows = tuple((epoch, {"epoch": epoch, "train_acc": 0.5 + epoch / 40, "val_acc": 0.5 + epoch / 50})
                 for epoch in range(1, 16))

    async def main() -> None:
        app = _Charts()
        async with app.run_test(size=(60, 20)) as pilot:
            chart = app.query_one(BackgroundPlot)
            chart.draw(lambda plt: draw_acc(plt, ChartData(epochs=rows)))
            await _until(pilot, lambda: not chart.pending)
            axis = chart.render().plain.splitlines()[-1].split()  # plotext's last line: the x tick labels
            assert axis == ["3", "6", "9", "12", "15"], axis

    asyncio.run(main())
