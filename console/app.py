"""The Textual console: one app, six screens (Textual modes) over the same run folders as the CLI.

`create_app` is the one factory: `imgcls-console` with no arguments and the UI tests both call it. The UI
process never imports torch: Launch's previews and Evaluate's evaluations run in the compute process
(console/compute.py), training in child processes of its own (`engine.launch`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from console.palette import ActionCommands, PresetCommands, RunCommands, SweepCommands
from console.settings import load_settings, save_settings

# How long a thread may hold the GIL while another wants it (Python's default: 5 ms). The UI thread takes it
# back from the worker threads (charts being built, runs tailed, evaluations) within 1 ms: keys answer sooner
# while runs stream (bench/console_keys.py: p95 lower by ~0.01 s in each of five paired runs on 2 cores).
UI_SWITCH_INTERVAL_S = 0.001


def _lazy(module: str, name: str) -> Callable[[], Screen[Any]]:
    """A screen factory that imports its module when the screen is first shown (the app opens faster)."""

    def make() -> Screen[Any]:
        return getattr(importlib.import_module(f"console.screens.{module}"), name)()

    return make


class ConsoleApp(App[None]):
    """imgcls-console: compose, launch, watch, compare and evaluate image-classification runs."""

    TITLE = "imgcls-console"
    CSS_PATH = "app.tcss"
    SCREENS = {"launch": _lazy("launch", "LaunchScreen"), "monitor": _lazy("monitor", "MonitorScreen"),
               "runs": _lazy("runs", "RunsScreen"), "evaluate": _lazy("evaluate", "EvaluateScreen"),
               "presets": _lazy("presets", "PresetsScreen"), "sweeps": _lazy("sweeps", "SweepsScreen")}
    MODES = {name: name for name in SCREENS}
    DEFAULT_MODE = "launch"
    COMMANDS = App.COMMANDS | {ActionCommands, PresetCommands, RunCommands, SweepCommands}
    BINDINGS = [
        Binding("f2", "switch_mode('launch')", "Launch", show=False),
        Binding("f3", "switch_mode('monitor')", "Monitor", show=False),
        Binding("f4", "switch_mode('runs')", "Runs", show=False),
        Binding("f5", "switch_mode('evaluate')", "Evaluate", show=False),
        Binding("f6", "switch_mode('presets')", "Presets", show=False),
        Binding("f7", "switch_mode('sweeps')", "Sweeps", show=False),
        Binding("f1", "help", "Help", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, runs_root: Path, experiment: str = "quickstart", mode: str = "launch", **kwargs: Any) -> None:
        if mode not in self.SCREENS:
            raise ValueError(f"no screen {mode!r}: one of {', '.join(self.SCREENS)}")
        self.DEFAULT_MODE = mode  # the screen the app opens on (tests open straight on theirs)
        super().__init__(**kwargs)
        self.runs_root = runs_root
        self.experiment = experiment
        self.settings = load_settings()  # the theme and Runs sort of the last session (console/settings.py)

    def on_mount(self) -> None:
        sys.setswitchinterval(UI_SWITCH_INTERVAL_S)
        if self.settings["theme"] in self.available_themes:
            self.theme = self.settings["theme"]
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.DEFAULT_MODE != "monitor":
            self.run_worker(self._tell_running_runs, thread=True, exit_on_error=False, group="app-start")

    def _remember_theme(self, theme: Any) -> None:
        """A theme picked (ctrl+p → Theme) is the next session's too."""
        if theme.name != self.settings["theme"]:
            self.remember(theme=theme.name)

    def remember(self, **changes: Any) -> None:
        """Keep settings for the next session (written in a thread: a slow home folder never holds a key)."""
        self.settings.update(changes)
        self.run_worker(lambda: save_settings(changes), thread=True, exit_on_error=False, group="settings")

    def _tell_running_runs(self) -> None:
        """Worker: runs still training when the app opens (it was closed while they trained, or they were started
        from a shell) are said once, with the key that shows them (Monitor follows them by itself)."""
        from engine.runs import RunningRuns

        running = RunningRuns(Path(self.runs_root)).scan()
        if running:
            names = ", ".join(run.name for run in running[:2]) + (" …" if len(running) > 2 else "")
            self.call_from_thread(self.notify, f"{len(running)} training now ({names}): F3 shows "
                                  f"{'it' if len(running) == 1 else 'them'} in Monitor", timeout=8)

    # --- navigation between screens: each target screen keeps the request until it is mounted ---

    def monitor_run(self, run_dir: Path, handle: Any = None) -> None:
        """Show a run (new, running, finished or started headless) in Monitor and follow it; `handle` is the
        `engine.launch.RunHandle` of a run launched from the app (its exit and error are then known)."""
        self.get_screen("monitor").follow_run(Path(run_dir), handle)  # type: ignore[attr-defined]
        self.switch_mode("monitor")

    def evaluate_refs(self, refs: list[str]) -> None:
        """Open Evaluate with these checkpoint references (RUN, RUN:best, RUN:all, a k-fold group) picked; a run
        given by its folder's path is picked by its name when it is in the runs folder (as Evaluate lists it)."""
        self.get_screen("evaluate").pick([self._listed_name(ref) for ref in refs])  # type: ignore[attr-defined]
        self.switch_mode("evaluate")

    def _listed_name(self, ref: str) -> str:
        """`ref`, or the name of the run folder it is a path of, if that folder is in the runs folder."""
        path = Path(ref)
        if len(path.parts) > 1 and path.resolve().parent == Path(self.runs_root).resolve():
            return path.name
        return ref

    def launch_experiment(self, experiment: str, overrides: list[str] | None = None, *,
                          finetune_from: str | None = None) -> None:
        """Open Launch with this experiment (preset name or YAML path) and overrides composed; with
        `finetune_from` (RUN[:CHECKPOINT]) its Start fine-tunes from that checkpoint's weights."""
        self.get_screen("launch").compose_experiment(  # type: ignore[attr-defined]
            experiment, overrides or [], finetune_from=finetune_from)
        self.switch_mode("launch")

    def use_section_preset(self, kind: str, name: str) -> None:
        """Open Launch with this section preset (model, data, augment, optim, schedule) swapped into the
        experiment composed there."""
        self.get_screen("launch").use_section(kind, name)  # type: ignore[attr-defined]
        self.switch_mode("launch")

    def show_preset(self, kind: str, name: str) -> None:
        """Open Presets on one preset."""
        self.get_screen("presets").show_preset(kind, name)  # type: ignore[attr-defined]
        self.switch_mode("presets")

    def show_sweep(self, name: str) -> None:
        """Open Sweeps on one sweep (its trials and best-so-far chart)."""
        self.get_screen("sweeps").show_sweep(name)  # type: ignore[attr-defined]
        self.switch_mode("sweeps")

    def run_screen_action(self, mode: str, action: str) -> None:
        """Show a screen and run one of its key's actions there (the palette's `Runs: Delete` …)."""
        screen = self.get_screen(mode)
        self.switch_mode(mode)
        self.call_after_refresh(self.run_action, action, screen)

    def action_help(self) -> None:
        from console.screens.help import HelpScreen, help_page

        screen = self.screen
        if isinstance(screen, HelpScreen):
            return
        base = self.screen_stack[0] if self.screen_stack else None
        name = self.current_mode.capitalize() if screen is base else "this dialog"
        self.push_screen(HelpScreen(help_page(screen, name)))


def create_app(runs_root: Path | str | None = None, experiment: str = "quickstart", mode: str = "launch") -> ConsoleApp:
    """The console app over a runs folder (default: `$IMGCLS_RUNS_DIR` or `./runs`), opening on `mode`."""
    from engine.runs import runs_dir

    return ConsoleApp(runs_dir(runs_root), experiment, mode)
