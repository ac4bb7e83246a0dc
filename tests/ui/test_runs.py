"""The Runs screen over real run folders: table, filter, sort, overlay + diff, notes, export, delete, bad folders."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
from pathlib import Path

import yaml
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static, TabbedContent
from typer.testing import CliRunner

from console.app import ConsoleApp, create_app
from console.cli import app as cli_app
from console.screens.run_rows import COLUMNS
from console.screens.runs import RunsScreen
from console.screens.runs_dialogs import ConfirmDialog, NoteDialog, PathDialog
from console.widgets.background_plot import BackgroundPlot
from engine.annotations import read_annotations
from engine.runs import write_status


async def open_runs(app: ConsoleApp, pilot: Pilot) -> RunsScreen:
    """Switch to Runs and wait for its worker to have read the runs folder."""
    app.switch_mode("runs")
    screen = app.screen
    assert isinstance(screen, RunsScreen)
    for _ in range(200):
        if screen.loaded:
            break
        await pilot.pause(0.05)
    await pilot.pause()
    assert screen.loaded
    return screen


async def wait_for(pilot: Pilot, condition: object, tries: int = 200) -> None:
    """Pause until `condition()` holds (workers post their results as messages)."""
    for _ in range(tries):
        if condition():  # type: ignore[operator]
            return
        await pilot.pause(0.05)
    screen = pilot.app.screen
    detail = (status_text(screen), screen.selected, screen.overlay_labels) if isinstance(screen, RunsScreen) else screen
    raise AssertionError(f"condition not met in time: {detail}")


COLUMN = {key: index for index, key in enumerate(["mark", *(key for key, _ in COLUMNS)])}  # a row's cell by key


def table_rows(screen: RunsScreen) -> list[list[str]]:
    table = screen.query_one("#runs-table", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def status_text(screen: RunsScreen) -> str:
    return str(screen.query_one("#runs-status", Static).content)


def test_table_filter_sort_and_comparison(trained_run: Path, second_run: Path, runs_root: Path) -> None:
    best = {p.name: json.loads((p / "status.json").read_text())["best_val_acc"] for p in (trained_run, second_run)}

    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_runs(app, pilot)
            rows = table_rows(screen)
            assert {row[2] for row in rows} == set(best)
            for row in rows:
                assert row[COLUMN["best_val_acc"]] == f"{100 * best[row[2]]:.2f}%" and row[1] == "finished"
            await pilot.press("slash", *"quickstart-b")
            assert [row[2] for row in table_rows(screen)] == [second_run.name]
            screen.query_one("#runs-filter", Input).value = "digits finished"
            await pilot.pause()
            assert len(table_rows(screen)) == 2
            screen.query_one("#runs-filter", Input).value = "no-such-run"
            await pilot.pause()
            assert table_rows(screen) == [] and "0/2" in str(screen.query_one("#runs-count", Static).content)
            screen.query_one("#runs-filter", Input).value = ""
            await pilot.press("enter")  # leaves the filter for the table
            while screen.sort_column != "best_val_acc":
                await pilot.press("s")
            ranked = sorted(best, key=best.__getitem__, reverse=True)
            assert [row[2] for row in table_rows(screen)] == ranked
            await pilot.press("S")
            assert [row[2] for row in table_rows(screen)] == ranked[::-1]
            await click_header(screen, pilot, "test_acc")
            assert (screen.sort_column, screen.sort_descending) == ("test_acc", True)
            tests = [float(row[COLUMN["test_acc"]].rstrip("%")) for row in table_rows(screen)]
            assert tests == sorted(tests, reverse=True)
            await check_comparison(screen, pilot)

    asyncio.run(main())


async def click_header(screen: RunsScreen, pilot: Pilot, column_key: str) -> None:
    """Click a column's header with the mouse."""
    table = screen.query_one("#runs-table", DataTable)
    x = 0
    for column in table.ordered_columns:
        if column.key.value == column_key:
            break
        x += column.get_render_width(table)
    await pilot.click(table, offset=(x + 2, 0))
    await pilot.pause()


def test_rows_filter_sort_and_labels() -> None:
    from console.screens.run_rows import RunRow, filter_rows, labels_by_difference, short_labels, sort_rows

    rows = [RunRow("a-20250101-000000", Path("a"), model="resnet", best_val_acc=0.5, tags=("baseline",)),
            RunRow("b-20250101-000000", Path("b"), model="convnet", best_val_acc=None),
            RunRow("c-20250101-000000", Path("c"), model="convnet", best_val_acc=0.9, state="failed")]
    assert [r.name[0] for r in filter_rows(rows, "CONVNET failed")] == ["c"]
    assert [r.name[0] for r in filter_rows(rows, "baseline")] == ["a"]
    assert [r.name[0] for r in sort_rows(rows, "best_val_acc", True)] == ["c", "a", "b"]  # missing: last
    assert [r.name[0] for r in sort_rows(rows, "best_val_acc", False)] == ["a", "c", "b"]
    assert short_labels(["g/x-20250101-000000", "x-20250102-000000-1", "y"]) == ["x#1", "x#2", "y"]
    # runs that read the same are named by what differs in their configs, when that tells them apart
    assert labels_by_difference(["x#1", "x#2"], ["optim.lr", "train.seed"], [["0.05", "0.2"], ["0", "0"]]) == [
        "x lr=0.05, seed=0", "x lr=0.2, seed=0"]
    assert labels_by_difference(["x#1", "x#2"], [], []) == ["x#1", "x#2"]
    assert labels_by_difference(["x", "y"], ["optim.lr"], [["0.05", "0.2"]]) == ["x", "y"]


def test_folds_sit_under_their_group_in_any_order() -> None:
    from console.screens.run_rows import KFOLD, RunRow, cell_texts, nest_folds, sort_rows

    group = RunRow("g-20250101-000000", Path("g"), kind=KFOLD, best_val_acc=0.2)
    folds = [RunRow(f"g-20250101-000000/f{i}-20250101-000000", Path(f"g/f{i}"), best_val_acc=0.3 + i / 10)
             for i in range(2)]
    run = RunRow("r-20250101-000000", Path("r"), best_val_acc=0.9)
    ranked = sort_rows([group, *folds, run], "best_val_acc", True)  # r, f1, f0, g
    assert [r.path.name for r in nest_folds(ranked)] == ["r", "g", "f0", "f1"]  # the folds in fold order
    assert [r.path.name for r in nest_folds([folds[0], run])] == ["f0", "r"]  # group filtered out: kept as is
    assert cell_texts(folds[0], nested=True)["name"] == "└ f0-20250101-000000"
    assert cell_texts(folds[0])["name"] == "g-20250101-000000/f0-20250101-000000"
    assert cell_texts(group)["name"] == "g-20250101-000000/" and folds[0].group == group.name and not run.group


async def check_comparison(screen: RunsScreen, pilot: Pilot) -> None:
    """Space on both runs: the overlay chart has one series per run, the diff only the keys that differ."""
    compare = screen.query_one("#runs-compare")
    await pilot.press("ctrl+home", "space")
    assert not compare.display  # one run: nothing to compare
    await pilot.press("space")
    await wait_for(pilot, lambda: len(screen.overlay_labels) == 2)
    await pilot.pause()
    assert compare.display
    assert sorted(screen.overlay_labels) == ["quickstart", "quickstart-b"]
    plot = screen.query_one("#runs-acc", BackgroundPlot)
    await wait_for(pilot, lambda: not plot.pending)  # the overlay is built in a worker
    assert "val accuracy" in plot.render().plain
    legend = str(screen.query_one("#runs-legend", Static).content)  # above the charts, one colour per run
    assert all(f"━━ {label}" in legend for label in screen.overlay_labels)
    assert "optim.lr" in screen.diff_keys and "train.seed" in screen.diff_keys
    assert not {"train.epochs", "model.name", "data.source", "name"} & set(screen.diff_keys)
    diff = screen.query_one("#runs-diff", DataTable)
    assert [str(diff.get_row_at(i)[0]) for i in range(diff.row_count)] == screen.diff_keys
    tabs = screen.query_one("#runs-compare", TabbedContent)
    await pilot.press("c")  # curves ↔ config diff
    assert tabs.active == "compare-diff"
    await pilot.press("c")
    assert tabs.active == "compare-curves"
    await pilot.press("escape")  # clears the selection
    await pilot.pause()
    assert not compare.display and not screen.selected


def test_the_cursor_row_stays_in_view_when_the_comparison_opens(trained_run: Path, runs_root: Path) -> None:
    for index in range(14):  # more runs than the table shows at 80x24 once the comparison takes its half
        shutil.copytree(trained_run, runs_root / f"copy{index:02d}-20250101-0000{index:02d}")

    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_runs(app, pilot)
            table = screen.query_one("#runs-table", DataTable)
            await pilot.press("space", *["down"] * 11, "space")  # the second pick near the bottom
            compare = screen.query_one("#runs-compare")
            await wait_for(pilot, lambda: compare.display and len(screen.overlay_labels) == 2)
            await pilot.pause()
            cursor_y = table.cursor_row + 1 - table.scroll_y  # below the header
            assert table.cursor_row == 13 and 1 <= cursor_y < table.scrollable_content_region.height

    asyncio.run(main())


def test_note_tags_written_shown_by_cli_and_export(trained_run: Path, runs_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "exported" / "preset.yaml"

    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_runs(app, pilot)
            table, count = screen.query_one("#runs-table", DataTable), screen.query_one("#runs-count", Static)
            assert str(count.content).endswith("· → more")  # at 80 columns the table scrolls sideways
            shown = table.ordered_columns[:COLUMN["wall_s"] + 1]  # state, run, accuracies, epochs, time: in view
            assert sum(column.get_render_width(table) for column in shown) <= table.scrollable_content_region.width
            await pilot.press("right")  # a column at a time; the mark, state and run stay in view
            assert table.scroll_x == table.ordered_columns[COLUMN["best_val_acc"]].get_render_width(table)
            await pilot.press(*["right"] * len(COLUMNS))
            await wait_for(pilot, lambda: str(count.content).endswith("· ← more"))
            assert table.scroll_x == table.max_scroll_x and table.fixed_columns == COLUMN["name"] + 1
            await pilot.press("left")
            assert 0 < table.scroll_x < table.max_scroll_x
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, NoteDialog))
            app.screen.query_one("#tags-input", Input).value = "two words!"
            await pilot.press(*"lr too high")
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, NoteDialog)  # a bad tag is explained in place, nothing written
            assert "plain word" in str(app.screen.query_one("#dialog-error", Static).content)
            app.screen.query_one("#tags-input", Input).value = "baseline digits"
            await pilot.press("enter")
            await wait_for(pilot, lambda: (trained_run / "notes.json").is_file())
            await wait_for(pilot, lambda: "baseline digits" in table_rows(screen)[0])
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, PathDialog))
            app.screen.query_one("#path-input", Input).value = str(out)
            await pilot.press("enter")
            await wait_for(pilot, out.is_file)
            await wait_for(pilot, lambda: "wrote" in status_text(screen))
            shown = "exported/preset.yaml"  # from the working folder: the status is one line
            assert status_text(screen) == f"wrote {shown}: `imgcls-console train {shown}` re-runs it"

    asyncio.run(main())
    assert read_annotations(trained_run).note == "lr too high"
    assert read_annotations(trained_run).tags == ["baseline", "digits"]
    shown = CliRunner().invoke(cli_app, ["runs", "show", trained_run.name, "--runs-dir", str(runs_root)],
                               terminal_width=200)
    assert shown.exit_code == 0 and "note: lr too high" in shown.stdout and "tags: baseline, digits" in shown.stdout
    exported = yaml.safe_load(out.read_text())
    assert exported["content_hash"] == yaml.safe_load((trained_run / "config.yaml").read_text())["content_hash"]


def test_damaged_folders_are_listed_and_delete_asks_first(trained_run: Path, second_run: Path,
                                                          runs_root: Path) -> None:
    status = json.loads((second_run / "status.json").read_text())
    write_status(second_run, {**status, "state": "running", "host": socket.gethostname(), "pid": os.getpid()})
    only_config = runs_root / "half-config-20250101-000000"
    only_config.mkdir()
    (only_config / "config.yaml").write_text((trained_run / "config.yaml").read_text())
    garbage = runs_root / "garbage-status-20250101-000001"
    garbage.mkdir()
    (garbage / "status.json").write_text('{"state": "runn')
    not_a_record = runs_root / "list-status-20250101-000002"
    not_a_record.mkdir()
    (not_a_record / "status.json").write_text("[1, 2]")
    (not_a_record / "notes.json").write_text("{broken")

    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_runs(app, pilot)
            states = {row[2]: row[1] for row in table_rows(screen)}
            assert states == {trained_run.name: "finished", second_run.name: "running", only_config.name: "unknown",
                              garbage.name: "unknown", not_a_record.name: "unknown"}
            await show_only(screen, pilot, "garbage")
            assert "not valid JSON" in status_text(screen)
            await show_only(screen, pilot, "half-config")
            await pilot.press("r")  # resume: the engine's one-line refusal, no traceback
            await wait_for(pilot, lambda: "no checkpoint to resume from" in status_text(screen))
            await show_only(screen, pilot, "")
            await pilot.press("a")  # compare everything: the damaged ones have no curves, nothing raises
            assert len(screen.selected) == 5
            await wait_for(pilot, lambda: len(screen.overlay_labels) == 2)  # the two trained runs
            await pilot.press("escape")
            await check_delete(app, screen, pilot, trained_run, second_run)

    asyncio.run(main())
    assert second_run.is_dir() and not trained_run.exists()


async def show_only(screen: RunsScreen, pilot: Pilot, text: str) -> None:
    """Filter the table, put the cursor on its first row."""
    screen.query_one("#runs-filter", Input).value = text
    await pilot.pause()
    screen.query_one("#runs-table", DataTable).focus()
    await pilot.press("ctrl+home")


async def check_delete(app: ConsoleApp, screen: RunsScreen, pilot: Pilot, finished: Path, running: Path) -> None:
    """A running run is refused; a finished one asks first, `n` keeps it, `y` removes the folder."""
    await show_only(screen, pilot, running.name)
    await pilot.press("d")
    await pilot.pause()
    assert not isinstance(app.screen, ConfirmDialog) and "is running" in status_text(screen)
    await show_only(screen, pilot, finished.name)
    await pilot.press("d")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
    await pilot.press("n")
    await pilot.pause()
    assert finished.is_dir() and app.screen is screen
    await pilot.press("d")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
    await pilot.press("y")
    await wait_for(pilot, lambda: not finished.exists())
    await wait_for(pilot, lambda: finished.name not in {r.name for r in screen.rows})
    assert "deleted" in status_text(screen)


def test_fine_tune_from_runs_starts_from_the_runs_weights(trained_run: Path, runs_root: Path) -> None:
    """Runs' `f` opens Launch on the run's config named `<name>-ft`; Start fine-tunes from its best checkpoint
    (the same plan as the `finetune` command); ctrl+t would start from scratch instead."""
    from console.screens.launch import LaunchScreen
    from engine.launch import RunHandle
    from engine.runs import read_config, read_status

    handles: list[RunHandle] = []

    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(120, 40)) as pilot:
            await open_runs(app, pilot)
            await pilot.press("f")
            await wait_for(pilot, lambda: app.current_mode == "launch")
            launch = app.get_screen("launch", LaunchScreen)
            await wait_for(pilot, lambda: launch.config is not None and launch.problem is None, tries=1200)
            assert launch.finetune_from == str(trained_run) and launch.config.name == "quickstart-ft"
            assert "fine-tune from " + trained_run.name in str(launch.query_one("#launch-finetune", Static).content)
            assert launch.check_action("from_scratch", ()) is True
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: launch.last_launch is not None, tries=1200)
            handles.append(launch.last_launch)
            # Start switches to Monitor: let it finish mounting before the app closes (closing mid-mount left the
            # Monitor's on_mount without its widgets)
            await wait_for(pilot, lambda: app.current_mode == "monitor" and app.screen.is_mounted)
            await pilot.pause(0.2)

    asyncio.run(main())
    (handle,) = handles
    assert handle.wait(timeout=240) == 0, handle.failure()
    status = read_status(handle.run_dir)
    assert status["state"] == "finished" and status["parent"] == f"{trained_run.name}:best"
    config = read_config(handle.run_dir)
    assert config.name == "quickstart-ft" and config.model.pretrained.endswith("best/weights.safetensors")


def test_fine_tune_of_a_run_trained_on_plans_its_schedule_over_its_own_epochs(trained_run: Path,
                                                                             runs_root: Path) -> None:
    """A run resumed to more epochs keeps `schedule.plan_epochs` and `extend` (its LR went on after its plan):
    the composition Runs' `f` opens must not carry them, or a longer new run (fine-tuned, from scratch or saved
    as a preset) would spend its epochs past the old plan at the end LR."""
    from console.screens.launch import LaunchScreen

    resumed = CliRunner().invoke(cli_app, ["resume", str(trained_run), "--set", "train.epochs=3", "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert yaml.safe_load((trained_run / "config.yaml").read_text())["schedule"]["plan_epochs"] == 2

    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(120, 40)) as pilot:
            await open_runs(app, pilot)
            await pilot.press("f")
            await wait_for(pilot, lambda: app.current_mode == "launch")
            launch = app.get_screen("launch", LaunchScreen)
            await wait_for(pilot, lambda: launch.config is not None and launch.problem is None, tries=1200)
            assert (launch.config.schedule.plan_epochs, launch.config.schedule.extend) == (None, [])
            assert launch.config.train.epochs == 3

    asyncio.run(main())


def test_r_on_a_finished_run_asks_to_how_many_epochs_and_monitor_waits_on_the_process(trained_run: Path,
                                                                                     runs_root: Path) -> None:
    """Runs' r on a run that trained all its epochs asks, as Monitor's does (it started a resume that was refused
    and pointed to the CLI), and hands the process to Monitor, which reaps it (it was left a zombie)."""
    from console.screens.monitor import MonitorScreen
    from console.screens.runs_dialogs import EpochsDialog

    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(120, 40)) as pilot:
            await open_runs(app, pilot)
            await pilot.press("r")
            await wait_for(pilot, lambda: isinstance(app.screen, EpochsDialog))
            app.screen.query_one("#epochs-input", Input).value = "3"
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.current_mode == "monitor", tries=600)
            monitor = app.get_screen("monitor", MonitorScreen)
            followed = monitor.followed[trained_run.resolve()]
            assert followed.handle is not None  # the process is Monitor's to wait on
            model = monitor.models[trained_run.resolve()]
            await wait_for(pilot, lambda: model.state == "finished" and sorted(model.rows) == [1, 2, 3], tries=4800)
            await wait_for(pilot, lambda: followed.handle.poll() is not None, tries=600)  # its exit is known
            assert not model.warnings

    asyncio.run(main())


def test_the_comparison_is_read_again_when_a_compared_run_trains_further(trained_run: Path, second_run: Path,
                                                                          runs_root: Path) -> None:
    """Two runs compared; one is resumed to more epochs (here from a shell): on the next read of the folder the
    diff and curves are those of the runs as they are now (the diff kept `train.epochs 2 vs 2`)."""

    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_runs(app, pilot)
            await pilot.press("ctrl+home", "space", "space")
            await wait_for(pilot, lambda: len(screen.overlay_labels) == 2)
            assert "train.epochs" not in screen.diff_keys
            resumed = CliRunner().invoke(cli_app, ["resume", str(trained_run), "--set", "train.epochs=3", "-q"])
            assert resumed.exit_code == 0, resumed.output
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: "train.epochs" in screen.diff_keys, tries=400)
            assert "schedule.plan_epochs" in screen.diff_keys

    asyncio.run(main())


def test_a_run_started_from_a_shell_appears_while_runs_is_shown(runs_root: Path) -> None:
    """No run trains, so nothing else would read the folder again: a run folder added by another process (the
    CLI in another terminal) shows up within a few seconds, without a key."""
    from engine.runs import create_run

    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_runs(app, pilot)
            assert screen.rows == []
            run_dir = create_run(runs_root, "from-a-shell")
            write_status(run_dir, {"state": "interrupted", "experiment": "quickstart", "epoch": 2, "epochs": 9})
            await wait_for(pilot, lambda: [row.name for row in screen.rows] == [run_dir.name], tries=200)
            assert table_rows(screen)[0][COLUMN["epochs"]] == "2/9"
            assert "no runs in" not in status_text(screen)  # the count said before is not left behind

    asyncio.run(main())


def test_the_runs_sort_and_the_theme_are_kept_for_the_next_session(trained_run: Path, second_run: Path,
                                                                   runs_root: Path, isolated_dirs: Path) -> None:
    from console.settings import load_settings, settings_path

    assert settings_path() == isolated_dirs / "console.yaml"  # beside the (test's) user presets, never the user's

    async def first() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_runs(app, pilot)
            assert (screen.sort_column, screen.sort_descending) == ("started", True)
            await pilot.press("S")  # oldest first
            app.theme = "nord"
            await wait_for(pilot, lambda: load_settings() == {"theme": "nord", "runs_sort": "started",
                                                              "runs_sort_descending": False})

    async def second() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_runs(app, pilot)
            assert (screen.sort_column, screen.sort_descending, app.theme) == ("started", False, "nord")
            assert [row[2] for row in table_rows(screen)] == [trained_run.name, second_run.name]

    asyncio.run(first())
    asyncio.run(second())
    settings_path().write_text("theme: [not, a, name]\nruns_sort: 3\n: : broken")  # damaged: the defaults
    assert load_settings() == {"theme": None, "runs_sort": "started", "runs_sort_descending": True}
    settings_path().write_text("theme: no-such-theme\nruns_sort: no-such-column\n")

    async def third() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_runs(app, pilot)
            assert screen.sort_column == "started" and app.theme != "no-such-theme"

    asyncio.run(third())
