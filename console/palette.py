"""Command palette providers (ctrl+p): actions and screens, experiments and presets, runs, sweeps."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider


class ActionCommands(Provider):
    """`Go to Runs`, `Help`, and what every screen's keys do (`Runs: Curves/diff`), found by their words or by
    what they do (the tooltips F1 lists): run on their screen, which is shown first."""

    async def startup(self) -> None:
        from console.screens.help import screen_bindings

        app: Any = self.app
        self.actions: list[tuple[str, str, str, Any]] = []  # (text, what it does, key, callback)
        for mode, key in zip(app.SCREENS, ("f2", "f3", "f4", "f5", "f6", "f7")):
            title = mode.capitalize()
            self.actions.append((f"Go to {title}", f"show the {title} screen", key, partial(app.switch_mode, mode)))
        self.actions.append(("Help", "the keys of this screen and what each screen is for", "f1", app.action_help))
        for mode in app.SCREENS:
            for binding in screen_bindings(app.get_screen(mode)):
                if binding.key == "escape":  # leaving a field or a dialog: nothing to run from the palette
                    continue
                self.actions.append((f"{mode.capitalize()}: {binding.description}",
                                     binding.tooltip or binding.description, binding.key.split(",")[0],
                                     partial(app.run_screen_action, mode, binding.action)))

    def _hit_help(self, what: str, key: str) -> str:
        return f"{what} ({self.app.get_key_display(Binding(key, ''))})"

    async def discover(self) -> Hits:
        for text, what, key, callback in self.actions:
            if text.startswith(("Go to", "Help")):
                yield DiscoveryHit(text, callback, help=self._hit_help(what, key))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, what, key, callback in self.actions:
            score = matcher.match(text)
            shown = matcher.highlight(text) if score > 0 else text
            score = max(score, 0.8 * matcher.match(what))  # `compare` finds `Runs: Curves/diff` by what it does
            if score > 0:
                yield Hit(score, shown, callback, help=self._hit_help(what, key))


class PresetCommands(Provider):
    """`Launch EXPERIMENT` for every experiment preset; `Preset KIND/NAME` opens it in Presets."""

    async def startup(self) -> None:
        from engine.presets import list_presets

        worker = self.app.run_worker(list_presets, thread=True)
        self.presets = await worker.wait()

    def _commands(self) -> list[tuple[str, Any, str]]:
        app: Any = self.app
        commands = []
        for info in self.presets:
            if info.kind == "experiment":
                commands.append((f"Launch {info.name}", partial(app.launch_experiment, info.name), info.description))
            commands.append((f"Preset {info.kind}/{info.name}", partial(app.show_preset, info.kind, info.name),
                             info.description))
        return commands

    async def discover(self) -> Hits:
        for text, callback, help_text in self._commands():
            if text.startswith("Launch "):
                yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)


class RunCommands(Provider):
    """`Monitor RUN` and `Evaluate RUN` for every run of the runs folder."""

    async def startup(self) -> None:
        from engine.runs import list_runs

        app: Any = self.app
        worker = self.app.run_worker(partial(list_runs, app.runs_root), thread=True)
        self.runs = await worker.wait()

    async def search(self, query: str) -> Hits:
        app: Any = self.app
        matcher = self.matcher(query)
        for run in reversed(self.runs):
            for verb, callback in (("Monitor", partial(app.monitor_run, run.path)),
                                   ("Evaluate", partial(app.evaluate_refs, [run.name]))):
                text = f"{verb} {run.name}"
                score = matcher.match(text)
                if score > 0:
                    yield Hit(score, matcher.highlight(text), callback, help=f"{run.state} · {run.model_label}")


class SweepCommands(Provider):
    """`Sweep NAME` for every sweep of the runs folder: opens it in Sweeps."""

    async def startup(self) -> None:
        from engine.sweep import known_sweeps

        app: Any = self.app
        worker = self.app.run_worker(partial(known_sweeps, app.runs_root), thread=True)
        self.sweeps = await worker.wait()

    async def search(self, query: str) -> Hits:
        app: Any = self.app
        matcher = self.matcher(query)
        for name in self.sweeps:
            text = f"Sweep {name}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(app.show_sweep, name),
                          help="its trials ranked, the best-so-far chart")
