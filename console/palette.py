"""Command palette providers (ctrl+p): experiments and presets, runs, sweeps."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider


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
