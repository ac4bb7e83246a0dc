"""The Evaluate screen on real finished runs: one checkpoint with TTA, then a cancelled evaluation and an unusable
reference in the same app; an ensemble (and greedy selection) picked by keyboard at 80x24."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table
from textual.pilot import Pilot
from textual.widgets import Checkbox, DataTable, Input, Select, Static, TabbedContent

from console.app import create_app
from console.screens.evaluate import EvaluateScreen
from console.screens.evaluate_parts import CheckpointTree


async def _until(pilot: Pilot[Any], condition: Callable[[], bool], steps: int = 600, delay: float = 0.05) -> None:
    """Let the app run until `condition` holds (bounded)."""
    for _ in range(steps):
        if condition():
            return
        await pilot.pause(delay)
    raise AssertionError("condition never held")


def _text(screen: EvaluateScreen, selector: str) -> str:
    content = screen.query_one(selector, Static).content
    return content.plain if hasattr(content, "plain") else str(content)


async def _open(app: Any, pilot: Pilot[Any], refs: list[str]) -> EvaluateScreen:
    """Pick `refs` before the screen exists (as Runs and the palette do), then wait for its run list."""
    app.evaluate_refs(refs)
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, EvaluateScreen)
    await _until(pilot, lambda: len(screen.query_one(CheckpointTree).root.children) > 0)
    return screen


def _set_options(screen: EvaluateScreen, split: str, tta: str, combine: str) -> None:
    screen.query_one("#eval-split", Select).value = split
    screen.query_one("#eval-tta", Select).value = tta
    screen.query_one("#eval-combine", Select).value = combine


async def _run(pilot: Pilot[Any], screen: EvaluateScreen) -> None:
    screen.outcome = None
    await pilot.press("r")
    await _until(pilot, lambda: screen.outcome is not None or screen.query_one("#eval-status").has_class("error"))
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def _cancel_then_fail(pilot: Pilot[Any], screen: EvaluateScreen, run: Path) -> None:
    """A long evaluation cancelled mid-way, then a reference to a run without checkpoints: the app stays up."""
    screen.query_one("#eval-tta", Select).value = "random"
    await pilot.pause()
    passes = screen.query_one("#eval-passes", Input)
    assert passes.display
    passes.value = "1000"  # the most a TTA spec takes: long enough to cancel mid-way
    await pilot.press("r")
    await _until(pilot, lambda: "view" in _text(screen, "#eval-stage"), delay=0.02)
    await pilot.press("c")
    await pilot.app.workers.wait_for_complete()
    await _until(pilot, lambda: "Cancelled" in _text(screen, "#eval-status"))
    assert _text(screen, "#eval-stage") == "cancelled" and screen.outcome is None
    assert _text(screen, "#eval-summary") == "" and screen.query_one("#eval-classes", DataTable).row_count == 0
    assert not list((run / "evals").glob("*random*.json"))
    assert pilot.app.is_running and pilot.app.screen is screen

    screen.pick(["broken-run"])
    await _run(pilot, screen)
    status = screen.query_one("#eval-status", Static)
    text = _text(screen, "#eval-status")
    assert status.has_class("error") and "broken-run" in text and "no checkpoint" in text
    assert "\n" not in text and screen.outcome is None and pilot.app.is_running
    assert _text(screen, "#eval-summary") == ""  # no earlier result under the error, read as this one's


def test_one_checkpoint_with_flip_then_cancel_then_a_bad_reference(trained_run: Path, runs_root: Path) -> None:
    from engine.ensemble import evaluate_checkpoint
    from engine.members import EvalOptions, checkpoint_ref

    broken = Path(shutil.copytree(trained_run, runs_root / "broken-run"))
    shutil.rmtree(broken / "checkpoints")  # a run folder without checkpoints cannot be evaluated

    async def main() -> None:
        app = create_app(runs_root, mode="evaluate")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await _open(app, pilot, [f"{trained_run.name}:best"])
            _set_options(screen, "test", "flip", "logits")
            await pilot.pause()
            await _run(pilot, screen)
            expected = evaluate_checkpoint(checkpoint_ref(trained_run, "best"), EvalOptions(split="test", tta="flip"),
                                           "logits", plot=False)
            summary = _text(screen, "#eval-summary")
            assert f"accuracy {100 * expected['accuracy']:.2f}%" in summary
            assert f"loss {expected['loss']:.4f}" in summary and "tta flip, logits" in summary
            assert screen.query_one("#eval-classes", DataTable).row_count == 10
            heatmap = screen.query_one("#eval-heatmap", Static).content
            assert isinstance(heatmap, Table) and heatmap.row_count == 10 and len(heatmap.columns) == 11
            wrong = sum(sum(row) - row[i] for i, row in enumerate(expected["confusion"]))
            assert wrong > 0 and len(screen.query(".wrong-cell")) == min(12, wrong)
            first = expected["confident_mistakes"][0]
            assert f"{first['true']}→{first['predicted']}" in str(screen.query(".wrong-caption").first().content)
            assert (trained_run / "evals" / "best-test-flip.json").is_file()  # the record the CLI writes too
            assert "training never applied hflip" in _text(screen, "#eval-notes")  # the engine's warning, as data
            app.evaluate_refs([f"{trained_run.name}:last"])  # other picks, from another screen or the palette
            await pilot.pause()
            assert screen.outcome is None and _text(screen, "#eval-summary") == ""  # not the last picks' numbers
            assert not screen.query_one("#eval-progress-row").display  # nor their `100% done … saved`
            await _cancel_then_fail(pilot, screen, trained_run)

    asyncio.run(main())


def test_ensemble_picked_by_keyboard_and_greedy_steps(trained_run: Path, second_run: Path, runs_root: Path) -> None:
    from engine.ensemble import evaluate_ensemble
    from engine.members import EvalOptions, checkpoint_ref

    async def main() -> None:
        app = create_app(runs_root, mode="evaluate")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await _open(app, pilot, [])
            tree = screen.query_one(CheckpointTree)
            tree.focus()
            await pilot.press("space", "space")  # both runs (newest first: space moves down), each at its best
            assert sorted(screen.picked) == sorted([trained_run.name, second_run.name])
            run_node = next(node for node in tree._all_nodes() if node.data == trained_run.name)
            best_node = next(node for node in run_node.children if node.data == f"{trained_run.name}:best")
            assert str(run_node.label).endswith(" → best")  # which checkpoint a picked run stands for
            assert str(best_node.label).startswith("● ")  # and that checkpoint marked with it
            _set_options(screen, "test", "none", "logits")
            await _run(pilot, screen)
            refs = [checkpoint_ref(trained_run, "best"), checkpoint_ref(second_run, "best")]
            expected = evaluate_ensemble(refs, EvalOptions(split="test", tta="none"), "logits")
            summary = _text(screen, "#eval-summary")
            assert f"accuracy {100 * expected['accuracy']:.2f}%" in summary and "ensemble of 2" in summary
            assert f"loss {expected['loss']:.4f}" in summary
            tabs = screen.query_one("#eval-tabs", TabbedContent)
            await pilot.press("2")  # result tabs by number
            assert tabs.active == "tab-confusion"
            await pilot.press("4")
            assert tabs.active == "tab-members"
            members = screen.query_one("#eval-members", Static).content
            assert isinstance(members, Table) and members.row_count == 2
            assert list((runs_root / "ensembles").glob("ensemble-test-none-logits-*.json"))

            await pilot.press("g")  # greedy selection on val: each step, and why it stopped
            assert screen.query_one("#eval-greedy", Checkbox).value
            await _run(pilot, screen)
            greedy = screen.outcome.result["greedy"] if screen.outcome else {}
            steps = screen.query_one("#eval-greedy-steps", Static)
            assert steps.display and isinstance(steps.content, Table)
            assert steps.content.row_count == len(greedy["trace"]) >= 1
            assert _text(screen, "#eval-stopped") == greedy["stopped"] and greedy["stopped"]

    asyncio.run(main())


def test_a_pick_from_another_screen_is_shown_far_down_a_long_list(trained_run: Path, runs_root: Path) -> None:
    """`e` on an old run among many: Evaluate opens with the cursor on it, scrolled into view, space unpicks it."""
    for index in range(40):  # newer runs, listed above it (newest first)
        newer = runs_root / f"quickstart-newer-{index:02d}"
        newer.mkdir()
        shutil.copy(trained_run / "config.yaml", newer / "config.yaml")
        shutil.copy(trained_run / "status.json", newer / "status.json")

    async def main() -> None:
        app = create_app(runs_root, mode="runs")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await _open(app, pilot, [f"{trained_run.name}:best"])
            tree = screen.query_one(CheckpointTree)
            picked = f"{trained_run.name}:best"
            await _until(pilot, lambda: tree.cursor_node is not None and tree.cursor_node.data == picked)
            line = tree.cursor_line
            assert line > tree.size.height  # far below the first screenful...
            assert tree.scroll_offset.y <= line < tree.scroll_offset.y + tree.size.height  # ...and in view
            await pilot.press("space")
            assert screen.picked == []

    asyncio.run(main())
