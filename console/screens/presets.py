"""The Presets screen: browse presets by kind, read their YAML, validate, import, export, launch experiments.

The preset files are listed and read in thread workers; validating, importing or exporting an experiment composes
it (model and augmentation checks import torch), so that runs in the console's compute process (console/compute.py),
waited for by a worker: the UI process never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.highlight import highlight
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Static, Tree
from textual.widgets.tree import TreeNode
from console.fmt import middle_ellipsis
from console.widgets.nav import NavBar

from engine.errors import EngineError
from engine.presets import ALL_KINDS, PresetInfo


@dataclass(frozen=True)
class PresetText:
    """A preset file's content as shown."""

    info: PresetInfo
    text: str


class PresetsLoaded(Message):
    """The worker listed every preset."""

    def __init__(self, presets: list[PresetInfo]) -> None:
        super().__init__()
        self.presets = presets


class PresetRead(Message):
    """The worker read one preset file."""

    def __init__(self, preset: PresetText) -> None:
        super().__init__()
        self.preset = preset


class PresetResult(Message):
    """A worker finished validate / import / export: one line for the result line."""

    def __init__(self, text: str, *, ok: bool, reload_to: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.text = text
        self.ok = ok
        self.reload_to = reload_to


def one_line(exc: BaseException) -> str:
    """An error as one line (YAML parser messages span several, with `^` markers under the bad column)."""
    text = str(exc) if isinstance(exc, (EngineError, OSError)) else f"{type(exc).__name__}: {exc}"
    text = text.replace(' in "<unicode string>",', "")  # the parser's name for the text it was given
    return " ".join(line.strip() for line in text.splitlines() if line.strip() not in ("", "^"))


class PresetsScreen(Screen[None]):
    """Presets by kind: YAML, origin and description; validate, import, export, launch."""

    CSS_PATH = "presets.tcss"
    SUB_TITLE = "Presets"
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    BINDINGS = [
        Binding("v", "validate", "Validate", tooltip="check the preset as training would"),
        Binding("l", "launch", "Launch",
                tooltip="open Launch with this experiment, or with this model, data, ... in the experiment there"),
        Binding("p", "focus_path", "Path", tooltip="type a file path for import or export"),
        Binding("i", "import_preset", "Import", tooltip="check the file in the path box and add it to your presets"),
        Binding("x", "export", "Export",
                tooltip="write the preset to the file in the path box (an experiment fully resolved)"),
        Binding("ctrl+r", "reload", "Refresh", show=False, tooltip="list the presets again"),
        Binding("escape", "focus_tree", "Back", show=False, tooltip="back to the list"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.presets: list[PresetInfo] = []
        self.current: PresetText | None = None  # the preset on screen
        self.target: PresetInfo | None = None  # the preset picked last (on screen once read)
        self.requested: tuple[str, str] | None = ("experiment", "quickstart")  # shown once the list is read
        self._said_after_show = ""  # a result to keep once the preset it names is shown (an import's)
        self.last_result = ""

    def compose(self) -> ComposeResult:
        """The tree of presets on the left; info, YAML, result line, path box and buttons on the right."""
        yield NavBar()
        with Horizontal(id="presets-body"):
            yield Tree("presets", id="presets-tree")
            with Vertical(id="presets-main"):
                yield Static("", id="presets-info")
                with VerticalScroll(id="presets-yaml-scroll"):
                    yield Static("", id="presets-yaml")
                yield Static("", id="presets-result", markup=False)
                yield Input(placeholder="file to import or export to  (p)", id="presets-path")
                with Horizontal(id="presets-actions"):
                    yield Button("Validate", id="validate", compact=True)
                    yield Button("Launch", id="launch", compact=True, variant="primary")
                    yield Button("Import", id="import", compact=True)
                    yield Button("Export", id="export", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        """List the presets (in a worker); the keyboard starts in the tree."""
        tree = self.query_one("#presets-tree", Tree)
        tree.show_root = False
        tree.guide_depth = 2  # narrow guides: long preset names fit a narrow column
        tree.focus()
        self.action_reload()

    # --- public: open a preset (works before the screen is mounted) ----------------------------------

    def show_preset(self, kind: str, name: str) -> None:
        """Show one preset; before mount (or before the list is read) the request waits."""
        self.requested = (kind, name)
        if self.is_mounted and self.presets:
            self._apply_request()

    def on_screen_resume(self) -> None:
        """Apply a request made while another screen was shown."""
        if self.presets and self.requested:
            self._apply_request()

    def _apply_request(self) -> None:
        """Move the tree's cursor to the requested preset, which shows it."""
        if self.requested is None:
            return
        kind, name = self.requested
        self.requested = None
        tree = self.query_one("#presets-tree", Tree)
        for kind_node in tree.root.children:
            for node in kind_node.children:
                if node.data is not None and (node.data.kind, node.data.name) == (kind, name):
                    self.target = node.data
                    kind_node.expand()
                    tree.move_cursor_to_line(self._line_of(tree, node))
                    self._read(node.data)
                    return
        self._say(f"no {kind} preset named {name!r}", ok=False)

    @staticmethod
    def _line_of(tree: Tree[PresetInfo], wanted: TreeNode[PresetInfo]) -> int:
        """The tree line of a preset node (the root is hidden: kinds, and the presets of expanded kinds)."""
        line = 0
        for kind_node in tree.root.children:
            line += 1
            if kind_node.is_expanded:
                for node in kind_node.children:
                    if node is wanted:
                        return line
                    line += 1
        return 0

    # --- listing and reading --------------------------------------------------------------------------

    def action_reload(self) -> None:
        """List the presets again (after an import, or files added by hand)."""
        self._list_presets()

    @work(thread=True, exit_on_error=False, exclusive=True, group="presets-list")
    def _list_presets(self) -> None:
        """Worker: every preset on the search path."""
        from engine.presets import list_presets

        try:
            self.post_message(PresetsLoaded(list_presets()))
        except Exception as exc:
            self.post_message(PresetResult(f"cannot list presets: {one_line(exc)}", ok=False))

    @on(PresetsLoaded)
    def _presets_loaded(self, message: PresetsLoaded) -> None:
        """Fill the tree (kind nodes with their presets); then show the requested or current preset."""
        self.presets = message.presets
        tree = self.query_one("#presets-tree", Tree)
        tree.clear()
        shown_kind = self.requested[0] if self.requested else (self.current.info.kind if self.current else "")
        for kind in ALL_KINDS:
            infos = [p for p in self.presets if p.kind == kind]
            kind_node = tree.root.add(f"{kind} ({len(infos)})", expand=kind == shown_kind)
            for info in infos:
                kind_node.add_leaf(self._label(info), data=info)
        if self.requested is None and self.current is not None:
            self.requested = (self.current.info.kind, self.current.info.name)
        self._apply_request()

    def _label(self, info: PresetInfo) -> Text:
        """A preset's line in the tree: its name, losing its middle when the tree is narrower (the header beside
        shows it whole), and its origin when not built in."""
        tree = self.query_one("#presets-tree", Tree)
        room = tree.content_region.width - tree.styles.scrollbar_size_vertical - 4  # its scrollbar, the guides
        label = Text(middle_ellipsis(info.name, room) if room > 0 else info.name)
        if info.origin != "builtin":
            label.append(f"  {info.origin}", style="italic dim")
        return label

    def on_resize(self) -> None:
        """Names fitted to the tree's new width."""
        for kind_node in self.query_one("#presets-tree", Tree).root.children:
            for node in kind_node.children:
                if node.data is not None:
                    node.set_label(self._label(node.data))

    @on(Tree.NodeHighlighted, "#presets-tree")
    def _node_highlighted(self, message: Tree.NodeHighlighted) -> None:
        """Moving the tree's cursor onto a preset shows it."""
        info = message.node.data
        if isinstance(info, PresetInfo) and info != self.target:
            self.target = info
            self._read(info)

    @work(thread=True, exit_on_error=False, exclusive=True, group="presets-read")
    def _read(self, info: PresetInfo) -> None:
        """Worker: read one preset file."""
        try:
            text = info.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            text = f"# cannot read {info.path}: {exc}"
        self.post_message(PresetRead(PresetText(info, text)))

    @on(PresetRead)
    def _preset_read(self, message: PresetRead) -> None:
        """Show a preset: kind/name, origin, path, description and its YAML (highlighted)."""
        preset = message.preset
        if preset.info != self.target:
            return  # another preset was picked while this one was read
        self.current = preset
        info = preset.info
        header = Text()
        header.append(f"{info.kind}/{info.name}", style="bold")
        header.append(f"  {info.origin}  {shown_path(info)}", style="dim")
        if info.description:
            header.append(f"\n{info.description}")
        self.query_one("#presets-info", Static).update(header)
        self.query_one("#presets-yaml", Static).update(highlight(preset.text, language="yaml"))
        self.query_one("#presets-yaml-scroll", VerticalScroll).scroll_home(animate=False)
        self.query_one("#launch", Button).disabled = info.kind != "experiment"
        self._say(self._said_after_show)
        self._said_after_show = ""

    # --- actions ----------------------------------------------------------------------------------------

    def _say(self, text: str, ok: bool = True) -> None:
        """The result line: green for a success, red for an error."""
        result = self.query_one("#presets-result", Static)
        result.update(text)
        result.tooltip = text or None  # the whole message, should it be longer than the lines it has
        result.set_class(not ok, "error")
        result.set_class(ok and bool(text), "ok")
        self.last_result = text

    @on(Button.Pressed)
    def _button(self, message: Button.Pressed) -> None:
        """The buttons run the same actions as their keys."""
        actions = {"validate": self.action_validate, "launch": self.action_launch,
                   "import": self.action_import_preset, "export": self.action_export}
        actions[str(message.button.id)]()

    def action_focus_path(self) -> None:
        """Type a path for import or export."""
        self.query_one("#presets-path", Input).focus()

    def action_focus_tree(self) -> None:
        """Back to the tree."""
        self.query_one("#presets-tree", Tree).focus()

    def action_validate(self) -> None:
        """Validate the shown preset in a worker (experiments are composed: that imports torch)."""
        if self.current is not None:
            self._say(f"validating {self.current.info.path.name} ...")
            self._validate(self.current.info)

    @work(thread=True, exit_on_error=False, exclusive=True, group="presets-action")
    def _validate(self, info: PresetInfo) -> None:
        """Worker: engine.presets.validate_file (in the compute process) -> OK or the one-line error."""
        from console.compute import shared

        try:
            kind = shared().call("console.compute:validate_preset", info.path, info.kind, retry=True)
        except Exception as exc:
            self.post_message(PresetResult(one_line(exc), ok=False))
            return
        self.post_message(PresetResult(f"OK: {info.path} is a valid {kind} preset", ok=True))

    def action_launch(self) -> None:
        """Open Launch with this experiment, or with this section preset swapped into the experiment there."""
        if self.current is None:
            return
        kind, name = self.current.info.kind, self.current.info.name
        if kind == "sweep":
            self._say(f"a sweep runs with `imgcls-console sweep run {name}`", ok=False)
        elif kind == "experiment":
            self.app.launch_experiment(name, [])  # type: ignore[attr-defined]
        else:  # a part of an experiment: swapped into the one composed in Launch
            self.app.use_section_preset(kind, name)  # type: ignore[attr-defined]

    def _path(self) -> Path | None:
        """The path box's file, or None after saying that one is needed."""
        text = self.query_one("#presets-path", Input).value.strip()
        if not text:
            self._say("type a file path in the path box first (p)", ok=False)
            self.action_focus_path()
            return None
        return Path(text).expanduser()

    def action_import_preset(self) -> None:
        """Validate the file named in the path box and copy it into the user preset folder."""
        path = self._path()
        if path is not None:
            self._say(f"importing {path} ...")
            self._import(path)

    @work(thread=True, exit_on_error=False, exclusive=True, group="presets-action")
    def _import(self, path: Path) -> None:
        """Worker: engine.presets.import_preset (in the compute process), then show the imported preset."""
        from console.compute import shared
        from engine.errors import ConfigError

        try:
            if not path.is_file():
                raise ConfigError(f"{path}: no such file")
            target = shared().call("engine.presets:import_preset", path)
        except Exception as exc:
            self.post_message(PresetResult(one_line(exc), ok=False))
            return
        self.post_message(PresetResult(f"imported as {target}", ok=True,
                                       reload_to=(target.parent.name, target.stem)))

    def action_export(self) -> None:
        """Write the shown preset to the file in the path box (an experiment fully resolved)."""
        path = self._path()
        if path is not None and self.current is not None:
            self._say(f"exporting to {path} ...")
            self._export(self.current.info, path)

    @work(thread=True, exit_on_error=False, exclusive=True, group="presets-action")
    def _export(self, info: PresetInfo, out: Path) -> None:
        """Worker: write what `presets export` writes for this preset."""
        from console.compute import shared
        from engine.runs import atomic_write_text

        try:
            text = shared().call("console.compute:preset_export_text", info.kind, info.path, out.name, retry=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out, text)
        except Exception as exc:
            self.post_message(PresetResult(f"not exported: {one_line(exc)}", ok=False))
            return
        what = {"experiment": "fully resolved experiment", "sweep": "sweep with the presets it names"}.get(
            info.kind, f"{info.kind} preset")
        self.post_message(PresetResult(f"wrote {out} ({what})", ok=True))

    @on(PresetResult)
    def _result(self, message: PresetResult) -> None:
        """Show a worker's result; after an import, list the presets again and show the new one."""
        self._say(message.text, ok=message.ok)
        if message.reload_to is not None:
            self.requested = message.reload_to
            self._said_after_show = message.text
            self.action_reload()

    @on(Input.Submitted, "#presets-path")
    def _path_entered(self, event: Input.Submitted) -> None:
        """Enter in the path box: back to the list, saying what the path is for (the keys act on it there)."""
        if event.value.strip():
            self.action_focus_tree()
            self._say(f"{event.value.strip()}: i imports this file (checked first); x writes the shown preset to it")


def shown_path(info: Any) -> str:
    """A preset's file: user presets by their full path; built-in ones inside the package (`presets/KIND/…`)."""
    from engine.presets import builtin_dir

    try:
        return f"presets/{info.path.resolve().relative_to(builtin_dir().resolve()).as_posix()}"
    except ValueError:
        return str(info.path)
