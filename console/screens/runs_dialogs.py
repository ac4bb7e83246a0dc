"""The console's dialogs: a run's note and tags, a file path to write to, a yes/no confirmation, how many
epochs to train a finished run to."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from console.fmt import plural
from engine.annotations import Annotations, parse_tags
from engine.errors import EngineError


class NoteDialog(ModalScreen[Annotations | None]):
    """Edit a run's note and tags; dismisses with the new Annotations (checked) or None when cancelled."""

    CSS_PATH = "runs_dialogs.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_name: str, current: Annotations) -> None:
        super().__init__()
        self.run_name = run_name
        self.current = current

    def compose(self) -> ComposeResult:
        """Title, the note, the tags, an error line for a refused tag, Save / Cancel."""
        with Vertical(classes="dialog"):
            yield Label(f"Note and tags of {self.run_name}", classes="dialog-title", markup=False)
            note = Input(self.current.note, placeholder="what was this run? (empty clears the note)", id="note-input")
            note.border_title = "note"
            yield note
            tags = Input(" ".join(self.current.tags), placeholder="plain words, e.g. baseline ema", id="tags-input")
            tags.border_title = "tags"
            yield tags
            yield Static("", id="dialog-error", classes="error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def save(self) -> None:
        """Check the tags here so a typo is fixed in place; the caller writes the file."""
        try:
            tags = parse_tags(self.query_one("#tags-input", Input).value)
        except EngineError as exc:
            self.query_one("#dialog-error", Static).update(str(exc))
            return
        self.dismiss(Annotations(self.query_one("#note-input", Input).value.strip(), tags))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)


class PathDialog(ModalScreen[Path | None]):
    """Ask for a file path (pre-filled); dismisses with the Path or None when cancelled."""

    CSS_PATH = "runs_dialogs.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, default: Path) -> None:
        super().__init__()
        self.title_text = title
        self.default = default

    def compose(self) -> ComposeResult:
        """Title, the path (pre-filled), an error line, Write / Cancel."""
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Input(str(self.default), placeholder="file to write", id="path-input")
            yield Static("", id="dialog-error", classes="error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Write", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def save(self) -> None:
        """Return the path typed (an empty box is refused in place)."""
        text = self.query_one("#path-input", Input).value.strip()
        if not text:
            self.query_one("#dialog-error", Static).update("give a file path")
            return
        self.dismiss(Path(text).expanduser())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; dismisses True only on the confirm button or `y`."""

    CSS_PATH = "runs_dialogs.tcss"
    BINDINGS = [Binding("escape,n", "cancel", "Cancel"), Binding("y", "confirm", "Yes")]

    def __init__(self, question: str, confirm_label: str = "Delete") -> None:
        super().__init__()
        self.question = question
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        """The question and two buttons."""
        with Vertical(classes="dialog"):
            yield Static(self.question, classes="dialog-title", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", variant="error", id="confirm")
                yield Button("Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        """Cancel has the focus: a stray enter must not delete anything."""
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed, "#confirm")
    def action_confirm(self) -> None:
        """Yes."""
        self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(False)


class EpochsDialog(ModalScreen[int | None]):
    """How many epochs a finished run should train to (more than it has); dismisses with the number or None."""

    CSS_PATH = "runs_dialogs.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_name: str, trained: int) -> None:
        super().__init__()
        self.run_name = run_name
        self.trained = trained

    def compose(self) -> ComposeResult:
        """The question, the number (pre-filled), an error line, Train / Cancel."""
        with Vertical(classes="dialog"):
            yield Label(f"Train {self.run_name} on: it has {plural(self.trained, 'epoch')}. To how many in all? (its LR "
                        "schedule keeps its past; the new epochs hold the LR it reached)", classes="dialog-title",
                        markup=False)
            yield Input(str(self.trained + 10), type="integer", id="epochs-input")
            yield Static("", id="dialog-error", classes="error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Train", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def save(self) -> None:
        """Return the number typed; one not above the epochs trained is refused in place."""
        text = self.query_one("#epochs-input", Input).value.strip()
        if not text.isdigit() or int(text) <= self.trained:
            self.query_one("#dialog-error", Static).update(f"more than {self.trained}, as a whole number")
            return
        self.dismiss(int(text))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without training."""
        self.dismiss(None)
