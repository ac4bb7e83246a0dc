"""The messages Launch's workers post to it (attributes down, messages up: a worker never touches a widget)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

from engine.config import ExperimentConfig
from engine.presets import PresetInfo

if TYPE_CHECKING:
    from engine.launch import RunHandle


class CatalogLoaded(Message):
    """The presets on the search path were listed."""

    def __init__(self, presets: list[PresetInfo]) -> None:
        super().__init__()
        self.presets = presets


class Resolved(Message):
    """The composition of `generation` resolved into a config."""

    def __init__(self, generation: int, config: ExperimentConfig, yaml_text: str,
                 section_names: dict[str, str | None]) -> None:
        super().__init__()
        self.generation = generation
        self.config = config
        self.yaml_text = yaml_text
        self.section_names = section_names


class PreviewReady(Message):
    """A preview (`task`: data, model, schedule) computed for `key`."""

    def __init__(self, task: str, key: str, result: Any) -> None:
        super().__init__()
        self.task = task
        self.key = key
        self.result = result


class TaskFailed(Message):
    """A worker's engine error, in its own words (`key`: what it was computing, for dropping stale ones)."""

    def __init__(self, task: str, key: Any, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__()
        self.task = task
        self.key = key
        self.message = message
        self.fields = fields or {}  # for "resolve": each field wrong on its own, and its error


class LrFindProgress(Message):
    """One step of the LR range test; a newer one replaces an unhandled older one."""

    def __init__(self, done: int, total: int, lr: float) -> None:
        super().__init__()
        self.done = done
        self.total = total
        self.lr = lr

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LrFindProgress)


class LrFound(Message):
    """The LR range test finished."""

    def __init__(self, result: dict[str, Any], steps: int) -> None:
        super().__init__()
        self.result = result
        self.steps = steps


class Launched(Message):
    """Training started in a child process."""

    def __init__(self, handle: RunHandle) -> None:
        super().__init__()
        self.handle = handle


class ComputeRestarted(Message):
    """The compute process had died (killed, crashed) and a new one took its place: one line saying so."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class Shared(Message):
    """A save or export wrote a file."""

    def __init__(self, text: str, *, saved_preset: bool) -> None:
        super().__init__()
        self.text = text
        self.saved_preset = saved_preset
