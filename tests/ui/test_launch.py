"""The Launch screen on real presets and the real digits: compose, validate as typed, preview, LR finder,
save/export, start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from console.app import ConsoleApp, create_app
from console.screens.launch import LaunchScreen
from console.widgets.background_plot import BackgroundPlot
from console.widgets.launch_panels import SchedulePanel

SIZE = (80, 24)  # the smallest supported terminal: everything must work there (and it renders fastest)


async def until(pilot: Pilot[Any], condition: Callable[[], Any], what: str, timeout_s: float = 60.0) -> None:
    """Wait (letting the app run) until `condition()` holds; fail naming `what` after `timeout_s`."""
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def launch(app: ConsoleApp) -> LaunchScreen:
    """The app's current screen, which must be Launch."""
    screen = app.screen
    assert isinstance(screen, LaunchScreen)
    return screen


def text_of(screen: LaunchScreen, selector: str) -> str:
    """What a Static shows."""
    return str(screen.query_one(selector, Static).content)


async def plotted_x(pilot: Pilot[Any], screen: LaunchScreen, selector: str) -> list[float]:
    """The x values of the first series drawn in a plot (once its worker has drawn it)."""
    plot = screen.query_one(selector, BackgroundPlot)
    await until(pilot, lambda: not plot.pending, f"{selector} drawn")
    monitor = plot.plt._active.monitor
    return list(monitor.x[0]) if monitor.x else []


def plotted_x_labels(screen: LaunchScreen, selector: str) -> list[str]:
    """The x tick labels a plot was given."""
    labels = screen.query_one(selector, BackgroundPlot).plt._active.monitor.xlabels[0]
    return [str(label) for label in labels or []]


async def ready(pilot: Pilot[Any], screen: LaunchScreen) -> None:
    """Resolved, with the data, model and schedule previews shown."""
    await until(pilot, lambda: screen.config is not None and {"data", "model", "schedule"} <= set(screen._shown),
                "the composition and its previews")


async def type_into(pilot: Pilot[Any], screen: LaunchScreen, selector: str, text: str) -> None:
    """Focus an input, clear it and type `text` key by key."""
    field = screen.query_one(selector, Input)
    field.focus()
    field.clear()
    await pilot.pause()
    await pilot.press(*text)


def run_folders(runs_root: Path) -> list[Path]:
    """Run folders created so far."""
    return [p for p in runs_root.iterdir() if (p / "config.yaml").is_file()] if runs_root.is_dir() else []


def test_opens_with_quickstart_and_picked_presets_change_the_yaml(runs_root: Path) -> None:
    async def main() -> None:
        app = create_app(runs_root)
        async with app.run_test(size=SIZE) as pilot:
            screen = launch(app)
            await ready(pilot, screen)
            assert screen.query_one("#pick-experiment", Select).value == "quickstart"
            yaml_text = screen.query_one("#yaml-view", Static).content.code  # type: ignore[attr-defined]
            assert "name: quickstart" in yaml_text and "name: cosine" in yaml_text
            assert screen.query_one("#field-optim-lr", Input).value == "0.05"
            assert text_of(screen, "#launch-problem") == "✓ valid"
            assert "params" in text_of(screen, "#about-model") and "MACs" in text_of(screen, "#about-model")

            models = screen.query_one("#pick-model", Select)  # every model preset's size at the digits' 1x8x8

            def labels() -> list[str]:
                return [str(label) for label, _ in models._options]

            await until(pilot, lambda: "small-cnn · 21.5K · 316K MACs" in labels(), "model sizes in the model picker")
            assert "speedrun · does not fit this input" in labels()

            picker = screen.query_one("#pick-schedule", Select)  # by keyboard: open, move to a preset, pick
            picker.focus()
            await pilot.press("enter")
            options = [value for _, value in picker._options if value is not Select.NULL]
            steps_down = options.index("multistep-10") - options.index("cosine")
            await pilot.press(*(["down"] * steps_down), "enter")
            await until(pilot, lambda: screen.config is not None and screen.config.schedule.name == "multistep",
                        "the multistep schedule")
            yaml_text = screen.query_one("#yaml-view", Static).content.code  # type: ignore[attr-defined]
            assert "name: multistep" in yaml_text and "schedule=multistep-10" in screen.composition.as_list()

            screen.query_one("#pick-model", Select).value = "mnist-logreg"
            await until(pilot, lambda: screen.config is not None and screen.config.model.name == "mlp", "mnist-logreg")
            assert "name: mlp" in screen.query_one("#yaml-view", Static).content.code  # type: ignore[attr-defined]
            await until(pilot, lambda: text_of(screen, "#about-model").startswith("650 params"),
                        "the logistic regression's size at 1x8x8 (64*10 + 10 parameters)")

            screen.query_one("#pick-experiment", Select).focus()  # the fields are seven Tabs down: ctrl+f jumps
            await pilot.press("ctrl+f")
            assert app.focused is screen.query_one("#field-optim-lr", Input)

    asyncio.run(main())


def test_fields_revalidate_as_typed_start_refuses_and_the_schedule_follows(runs_root: Path) -> None:
    from engine.data import load_dataset
    from engine.presets import resolve_experiment

    config = resolve_experiment("quickstart")
    steps = len(load_dataset(config.data).train_idx) // config.train.batch_size  # drop_last, no accumulation

    async def main() -> None:
        app = create_app(runs_root)
        async with app.run_test(size=SIZE) as pilot:
            screen = launch(app)
            await ready(pilot, screen)
            panel = screen.query_one(SchedulePanel)
            assert panel.points == len(await plotted_x(pilot, screen, "#schedule-plot")) == config.train.epochs * steps
            assert f"15 epochs × {steps} steps" in text_of(screen, "#schedule-info")
            schedule_ticks = panel.query_one("#schedule-plot", BackgroundPlot).plt._active.monitor.xticks[0]
            assert sorted(schedule_ticks) == [3, 6, 9, 12, 15]  # whole epochs

            await type_into(pilot, screen, "#field-optim-lr", "abc")
            await until(pilot, lambda: screen.problem is not None, "the engine's error")
            assert screen.problem.startswith("optim.lr: ") and "expected float" in screen.problem  # not --set
            lr_field = screen.query_one("#field-optim-lr", Input)
            lr_error = screen.query_one("#field-optim-lr-error", Static)
            await until(pilot, lambda: lr_error.display, "the error under the lr field")
            assert str(lr_error.content) == screen.problem and lr_field.has_class("field-problem")  # tinted
            assert text_of(screen, "#launch-problem") == "✗ fix the field marked above"
            await pilot.pause()
            assert lr_error.region.y == lr_field.region.bottom  # right under it, scrolled into view
            assert screen.query_one("#launch-left").region.contains_region(lr_error.region)
            await pilot.press("ctrl+r")
            assert text_of(screen, "#launch-status") == f"error: {screen.problem}"
            await type_into(pilot, screen, "#field-train-epochs", "-3")  # a second wrong field: both marked
            epochs_error = screen.query_one("#field-train-epochs-error", Static)
            await until(pilot, lambda: epochs_error.display, "the error under the epochs field")
            assert str(epochs_error.content) == "train.epochs: must be at least 1" and lr_error.display
            assert text_of(screen, "#launch-problem") == "✗ fix the 2 fields marked above"
            await type_into(pilot, screen, "#field-train-epochs", "15")
            await type_into(pilot, screen, "#field-optim-lr", "-1")
            await until(pilot, lambda: "optim.lr: must be positive" in str(lr_error.content), "-1")
            assert not epochs_error.display
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert run_folders(runs_root) == [] and app.current_mode == "launch"
            await type_into(pilot, screen, "#field-optim-lr", "0.2")
            await until(pilot, lambda: screen.problem is None and screen.config.optim.lr == 0.2, "lr 0.2 accepted")
            assert text_of(screen, "#launch-problem") == "✓ valid" and not lr_field.has_class("field-problem")
            assert not lr_error.display
            assert text_of(screen, "#about-optim").startswith("sgd lr 0.2, ")  # not the preset's own lr

            await type_into(pilot, screen, "#field-train-epochs", "12")
            screen.query_one("#pick-schedule", Select).value = "multistep-10"
            await until(pilot, lambda: "lr drops at the start of epochs: 11" in text_of(screen, "#schedule-notes"),
                        "the 12-epoch multistep schedule, its drop after epoch 10")
            assert panel.points == len(await plotted_x(pilot, screen, "#schedule-plot")) == 12 * steps
            assert "peak lr 0.2" in text_of(screen, "#schedule-info")

    asyncio.run(main())


def test_lr_finder_suggestion_then_save_as_preset_and_export(runs_root: Path, tmp_path: Path) -> None:
    from engine.presets import resolve_experiment, user_dir

    async def main() -> None:
        app = create_app(runs_root)
        async with app.run_test(size=SIZE) as pilot:
            screen = launch(app)
            screen.lr_find_steps = 40
            await ready(pilot, screen)
            await pilot.press("ctrl+l")
            await until(pilot, lambda: screen.suggested_lr is not None, "the LR finder's suggestion")
            assert len(await plotted_x(pilot, screen, "#lrfind-plot")) >= 10
            suggestion = f"{screen.suggested_lr:.3g}"
            assert suggestion in text_of(screen, "#lrfind-info")
            await pilot.press("ctrl+g")
            assert screen.query_one("#field-optim-lr", Input).value == suggestion
            lr = float(suggestion)
            await until(pilot, lambda: screen.config.optim.lr == lr, "optim.lr from the suggestion")
            assert f"lr: {lr}" in screen.query_one("#yaml-view", Static).content.code  # type: ignore[attr-defined]
            assert screen.suggested_lr is not None  # a new lr is not a new test subject
            labels = plotted_x_labels(screen, "#lrfind-plot")
            assert labels and all(label.startswith("1e-") or label == "1" for label in labels)  # lrs, not log10

            screen.query_one("#preset-name", Input).value = "digits-found-lr"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: "saved" in text_of(screen, "#share-status"), "the preset saved")
            assert (user_dir() / "experiment" / "digits-found-lr.yaml").is_file()
            saved = resolve_experiment("digits-found-lr")
            assert saved.optim.lr == lr and saved.name == "digits-found-lr"
            await until(pilot, lambda: any(value == "digits-found-lr" for _, value in
                                           screen.query_one("#pick-experiment", Select)._options),
                        "the saved preset in the experiment picker")
            await pilot.press("ctrl+s")  # the same name again, without "replace": refused, nothing written
            await until(pilot, lambda: "exists" in text_of(screen, "#share-status"), "the refusal")
            assert text_of(screen, "#share-status").startswith("error: ")

            target = tmp_path / "shared" / "exp.yaml"
            screen.query_one("#export-path", Input).value = str(target)
            await pilot.press("ctrl+o")
            await until(pilot, lambda: target.is_file(), "the exported file")
            assert resolve_experiment(str(target)).optim.lr == lr

            await type_into(pilot, screen, "#field-train-batch-size", "16")  # the test trained another batch size
            await until(pilot, lambda: "changed since this test" in text_of(screen, "#lrfind-info"), "stale")
            assert screen.suggested_lr is None and screen.query_one("#lrfind-apply").disabled

    asyncio.run(main())


def test_compose_experiment_before_mount_keeps_the_request(runs_root: Path) -> None:
    from engine.data import load_dataset
    from engine.presets import resolve_experiment

    train_images = len(load_dataset(resolve_experiment("quickstart", ["data.limit=400"]).data).train_idx)

    async def main() -> None:
        app = create_app(runs_root)
        screen = app.get_screen("launch", LaunchScreen)  # what app.launch_experiment does, before the app runs
        screen.compose_experiment("quickstart", ["train.epochs=3", "data.limit=400", "model=mnist-logreg"])
        async with app.run_test(size=(80, 24)) as pilot:
            assert app.screen is screen
            await ready(pilot, screen)
            assert screen.config.train.epochs == 3 and screen.config.model.name == "mlp"
            assert screen.query_one("#field-train-epochs", Input).value == "3"
            assert screen.query_one("#pick-model", Select).value == "mnist-logreg"
            assert text_of(screen, "#launch-extra") == "--set data.limit=400"
            assert f"train {train_images} ·" in text_of(screen, "#data-info")
            left, tabs = screen.query_one("#launch-left").region, screen.query_one("#launch-tabs").region
            assert left.right <= tabs.x and tabs.right <= 80 and tabs.width >= 40  # side by side, both usable
            # another composition (the palette's, a fine-tune's) while a field has focus: that field shows the new
            # composition's value too, not an empty box (the focused field was skipped as being typed into)
            await type_into(pilot, screen, "#field-train-epochs", "4")
            await until(pilot, lambda: screen.config.train.epochs == 4, "epochs 4")
            screen.compose_experiment("quickstart", ["data.limit=400"])
            await until(pilot, lambda: screen.config.train.epochs == 15, "quickstart's own epochs")
            epochs = screen.query_one("#field-train-epochs", Input)
            assert epochs.has_focus and epochs.value == "15"

    asyncio.run(main())


def test_start_launches_a_run_and_switches_to_monitor(runs_root: Path) -> None:
    from engine.errors import EngineError
    from engine.launch import preflight
    from engine.presets import resolve_experiment

    async def main() -> None:
        app = create_app(runs_root)
        async with app.run_test(size=SIZE) as pilot:
            screen = launch(app)
            app.launch_experiment("mnist-logreg", [])  # MNIST is not on disk offline: a pre-flight error
            await until(pilot, lambda: screen.config is not None and screen.config.name == "mnist-logreg", "mnist")
            await until(pilot, lambda: screen._data_error is not None, "the Data tab's error")
            await pilot.press("ctrl+r")
            await until(pilot, lambda: text_of(screen, "#launch-status").startswith("error: "), "the pre-flight error")
            try:
                preflight(resolve_experiment("mnist-logreg"))
            except EngineError as exc:
                assert str(exc) == screen._data_error  # the refusal is the Data tab's error: pointed to, not repeated
                assert text_of(screen, "#launch-status") == ("error: the data is not there; the Data tab says where "
                                                             "its files go")
            assert run_folders(runs_root) == [] and app.current_mode == "launch"

            app.launch_experiment("quickstart", ["train.epochs=1", "data.limit=300"])
            await until(pilot, lambda: screen.config is not None and screen.config.train.epochs == 1, "quickstart")
            await pilot.press("ctrl+r")
            await until(pilot, lambda: app.current_mode == "monitor", "Monitor")
            handle = screen.last_launch
            assert handle is not None and run_folders(runs_root) == [handle.run_dir]
            assert text_of(screen, "#launch-status") == f"started {handle.run_dir.name}"
            app.switch_mode("launch")
            await type_into(pilot, screen, "#field-train-epochs", "2")  # a new composition: that status is old
            assert text_of(screen, "#launch-status") == ""
            handle.process.terminate()  # the test needs the folder, not the training
            handle.wait(timeout=30)

    asyncio.run(main())


def test_the_screen_module_imports_no_torch() -> None:
    """The UI process imports torch only in workers."""
    code = "import console.screens.launch, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_data_is_told_in_the_data_tab_and_start_points_there(runs_root: Path) -> None:
    """MNIST not on disk (offline): the Data tab has the engine's message (where the files go); the model line
    keeps no size from the last data's input; Start is refused with a short status and shows the Data tab."""

    async def main() -> None:
        app = create_app(runs_root)
        async with app.run_test(size=SIZE) as pilot:
            screen = launch(app)
            await ready(pilot, screen)
            assert "params" in text_of(screen, "#about-model")  # quickstart's model, sized at the digits' input
            screen.compose_experiment("mnist-logreg", [])
            await until(pilot, lambda: screen._data_error is not None, "the data's error")
            assert "MNIST/raw" in text_of(screen, "#data-info") and "params," not in text_of(screen, "#about-model")
            assert not screen.query_one("#data-histogram").display  # no empty chart frame under the message
            await pilot.press("ctrl+r")
            await until(pilot, lambda: "error" in text_of(screen, "#launch-status"), "Start refused")
            assert text_of(screen, "#launch-status") == ("error: the data is not there; the Data tab says where its "
                                                         "files go")
            assert screen.query_one("#launch-tabs").active == "tab-data" and run_folders(runs_root) == []

    asyncio.run(main())


def test_a_model_that_does_not_fit_the_data_is_refused_at_start(runs_root: Path) -> None:
    """speedrun needs images of 9 px or more; the digits are 8 px: Start says so and shows the Model tab, and no
    run folder is made (it was, and failed at once). The model line drops the size of the model before."""

    async def main() -> None:
        app = create_app(runs_root)
        async with app.run_test(size=SIZE) as pilot:
            screen = launch(app)
            await ready(pilot, screen)
            screen.query_one("#pick-model", Select).value = "speedrun"
            await until(pilot, lambda: screen._model_error is not None, "the model's error")
            assert "21.5K params" not in text_of(screen, "#about-model")  # small-cnn's size is gone
            await pilot.press("ctrl+r")
            await pilot.pause()
            assert text_of(screen, "#launch-status") == "error: the model does not fit this data; the Model tab says why"
            assert screen.query_one("#launch-tabs").active == "tab-model" and run_folders(runs_root) == []
            experiment = screen.query_one("#pick-experiment", Select)
            experiment.value = Select.NULL  # the list's blank line: the composed experiment stays shown
            await pilot.pause()
            assert experiment.value == "quickstart" and screen.composition.experiment == "quickstart"
            screen.query_one("#pick-model", Select).value = "small-cnn"  # back to one that fits: the error goes
            await until(pilot, lambda: screen._model_error is None and screen._model_cost is not None, "small-cnn")
            assert text_of(screen, "#launch-status") == ""

    asyncio.run(main())
