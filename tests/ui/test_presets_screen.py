"""The Presets screen with the real preset files: show, validate, a broken user preset, export, import, launch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from textual.pilot import Pilot
from textual.widgets import Input, Static, Tree

from console.app import ConsoleApp, create_app
from console.screens.presets import PresetsScreen
from engine.presets import user_dir
from tests.conftest import write


def text_of(widget: Static) -> str:
    content = widget.content
    return content.plain if hasattr(content, "plain") else str(content)


async def wait_for(pilot: Pilot, condition: object, tries: int = 300) -> None:
    """Pause until `condition()` holds (workers post their results as messages)."""
    for _ in range(tries):
        if condition():  # type: ignore[operator]
            return
        await pilot.pause(0.05)
    screen = pilot.app.screen
    raise AssertionError(f"condition not met in time; result line: {getattr(screen, 'last_result', screen)!r}")


async def shown(app: ConsoleApp, pilot: Pilot, kind: str, name: str) -> PresetsScreen:
    """Open a preset through the app's navigation and wait until its YAML is on screen."""
    app.show_preset(kind, name)
    screen = app.screen
    assert isinstance(screen, PresetsScreen)
    await wait_for(pilot, lambda: screen.current is not None and
                   (screen.current.info.kind, screen.current.info.name) == (kind, name))
    await pilot.pause()
    return screen


async def validate(screen: PresetsScreen, pilot: Pilot) -> str:
    screen.last_result = ""
    await pilot.press("v")
    await wait_for(pilot, lambda: screen.last_result and not screen.last_result.startswith("validating"))
    return screen.last_result


def test_quickstart_yaml_validates_and_launches(runs_root: Path) -> None:
    async def main() -> None:
        app = create_app(runs_root, mode="presets")
        async with app.run_test(size=(120, 40)) as pilot:
            early = app.get_screen("presets", PresetsScreen)
            early.show_preset("experiment", "mnist-logreg")  # before the screen is mounted: kept
            app.switch_mode("presets")
            await wait_for(pilot, lambda: early.current is not None and early.current.info.name == "mnist-logreg")
            screen = await shown(app, pilot, "experiment", "quickstart")
            assert "source: digits" in text_of(screen.query_one("#presets-yaml", Static))
            info = text_of(screen.query_one("#presets-info", Static))
            assert "experiment/quickstart" in info and "builtin" in info and screen.current.info.description in info
            tree = screen.query_one("#presets-tree", Tree)
            assert tree.cursor_node is not None and tree.cursor_node.data.name == "quickstart"
            assert (await validate(screen, pilot)).startswith("OK")
            assert not screen.query_one("#presets-result").has_class("error")
            await pilot.press("l")
            await wait_for(pilot, lambda: app.current_mode == "launch")
            launch = app.screen
            await wait_for(pilot, lambda: launch.config is not None and launch.config.name == "quickstart")

            screen = await shown(app, pilot, "model", "mnist-logreg")  # a part: swapped into Launch's experiment
            await pilot.press("l")
            await wait_for(pilot, lambda: app.current_mode == "launch" and launch.config is not None
                           and launch.config.model.name == "mlp")
            assert launch.composition.experiment == "quickstart" and "model=mnist-logreg" in launch.composition.as_list()
            assert app.focused is launch.query_one("#pick-model")  # the swapped picker, in view

    asyncio.run(main())


def test_broken_user_preset_shows_a_one_line_error(runs_root: Path) -> None:
    write(user_dir() / "optim" / "typo.yaml", "lrr: 0.1\n")
    write(user_dir() / "optim" / "unparsable.yaml", "lr: [0.1\nmomentum: 0.9\n")

    async def main() -> None:
        app = create_app(runs_root, mode="presets")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await shown(app, pilot, "optim", "typo")
            assert "lrr: 0.1" in text_of(screen.query_one("#presets-yaml", Static))
            error = await validate(screen, pilot)
            assert "typo.yaml" in error and "lrr" in error and "did you mean `lr`" in error and "\n" not in error
            assert screen.query_one("#presets-result").has_class("error")
            screen = await shown(app, pilot, "optim", "unparsable")
            error = await validate(screen, pilot)
            assert "unparsable.yaml:2:9: not valid YAML: expected" in error and "\n" not in error
            await pilot.press("l")  # swapped into Launch's experiment: Launch says what is wrong with it
            await wait_for(pilot, lambda: app.current_mode == "launch")
            launch = app.screen
            await wait_for(pilot, lambda: launch.problem is not None and "unparsable.yaml" in launch.problem)

    asyncio.run(main())


def test_export_and_import(runs_root: Path, tmp_path: Path) -> None:
    exported = tmp_path / "out" / "quickstart-resolved.yaml"
    to_import = write(tmp_path / "shared" / "my-sgd.yaml", "description: shared by a colleague\nname: sgd\nlr: 0.2\n")

    async def main() -> None:
        app = create_app(runs_root, mode="presets")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await shown(app, pilot, "experiment", "quickstart")
            await pilot.press("x")  # no path yet: says so and puts the cursor in the path box
            await pilot.pause()
            assert "path" in screen.last_result and screen.query_one("#presets-path", Input).has_focus
            screen.query_one("#presets-path", Input).value = str(exported)
            await pilot.click("#export")
            await wait_for(pilot, exported.is_file)
            await wait_for(pilot, lambda: screen.last_result.startswith("wrote"))
            path_box = screen.query_one("#presets-path", Input)
            path_box.value = str(to_import)
            path_box.focus()
            await pilot.press("enter")  # back to the list, told what the path is for; keys act on it there
            assert screen.query_one("#presets-tree").has_focus and "i imports this file" in screen.last_result
            await pilot.press("i")
            await wait_for(pilot, lambda: screen.current is not None and screen.current.info.name == "my-sgd")
            assert screen.current.info.origin == "user" and "lr: 0.2" in text_of(screen.query_one("#presets-yaml"))
            assert screen.last_result.startswith("imported as ")  # said, and kept once the new preset is shown

    asyncio.run(main())
    resolved = yaml.safe_load(exported.read_text())
    assert resolved["content_hash"].startswith("sha256:") and resolved["data"]["source"] == "digits"
    assert (user_dir() / "optim" / "my-sgd.yaml").read_text() == to_import.read_text()


def test_a_section_preset_before_launch_was_shown_joins_the_experiment_it_opens_with(runs_root: Path) -> None:
    async def main() -> None:
        app = create_app(runs_root, experiment="mnist-logreg", mode="presets")
        async with app.run_test(size=(80, 24)) as pilot:
            await shown(app, pilot, "schedule", "multistep-10")
            await pilot.press("l")  # Launch never shown yet: the app's experiment, with this schedule swapped in
            await wait_for(pilot, lambda: app.current_mode == "launch")
            launch = app.screen
            await wait_for(pilot, lambda: launch.config is not None and launch.config.schedule.name == "multistep")
            assert launch.composition.experiment == "mnist-logreg"

    asyncio.run(main())


def test_long_names_lose_their_middle_in_a_narrow_tree(runs_root: Path) -> None:
    """At 80 columns the tree is narrower than the longest names: each loses its middle, so names sharing a long
    prefix (tiny200-efficientnet-v2-s, …-dropout08, …-shakedrop-all) stay told apart; wider, they show whole."""

    async def main() -> None:
        app = create_app(runs_root, mode="presets")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await shown(app, pilot, "experiment", "tiny200-efficientnet-v2-s-shakedrop-all")
            tree = screen.query_one("#presets-tree", Tree)
            experiments = next(n for n in tree.root.children if str(n.label).startswith("experiment"))
            labels = [str(node.label) for node in experiments.children]
            room = tree.scrollable_content_region.width - 4  # inside the scrollbar, after the guides
            assert len(set(labels)) == len(labels) and max(map(len, labels)) <= room
            assert "tiny200-efficientnet-v2-s-shakedrop-all" not in labels and any("…" in l for l in labels)
            await pilot.resize_terminal(200, 50)
            await pilot.pause()
            await pilot.pause()
            assert "tiny200-efficientnet-v2-s-shakedrop-all" in [str(n.label) for n in experiments.children]

    asyncio.run(main())
