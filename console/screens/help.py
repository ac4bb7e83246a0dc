"""The help screen: what each screen is for and its keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# imgcls-console

Every action here is also a command (`imgcls-console --help`) writing the same run folders.

| key | screen | what |
| --- | --- | --- |
| F2 | **Launch** | compose an experiment from presets, edit the common fields, preview the schedule and data, start it |
| F3 | **Monitor** | live loss / accuracy / LR charts, epoch table, ETA, device; stop a run gracefully |
| F4 | **Runs** | every run and k-fold group; notes and tags; overlay curves, diff configs, resume, fine-tune, delete |
| F5 | **Evaluate** | checkpoints → accuracy, per-class scores, confusion heatmap, TTA, ensembles |
| F6 | **Presets** | browse, view, validate, import and export presets |
| F7 | **Sweeps** | each sweep's trials ranked, live, and its best-so-far chart: enter or m opens a trial in Monitor, e picks the top 3 complete trials in Evaluate (r there runs their ensemble), r refreshes |
| ctrl+p | palette | launch an experiment, open a run, a preset or a sweep by name |
| F1 | help | this page (escape closes it) |
| ctrl+q | quit | runs keep training: reopen the app and find them in Runs |

Runs started here are child processes in their own session: closing the app never stops them.
"""


class HelpScreen(ModalScreen[None]):
    """Keys and screens, over the current screen."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)
