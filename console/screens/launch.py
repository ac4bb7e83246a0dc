"""The Launch screen: compose an experiment from presets, edit the fields people change most, look at what it
will do (resolved YAML, LR schedule, data, model size, LR finder), then start it or save it as a preset.

The composition is an experiment name plus `--set` overrides, exactly what `imgcls-console train EXP --set ...`
takes: picking a section preset adds `section=PRESET`, editing a field adds `dotted.key=VALUE`. Every change is
re-resolved by the engine, whose one-line error shows under the fields. Previews are computed too, each tagged
with the key of what it was asked for, so a late answer to an older question is dropped. Everything that needs
torch (resolving, previews, the LR finder, Start's checks) runs in the compute process (`console.compute`), called
from thread workers: this process never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.syntax import Syntax
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Button, Checkbox, Footer, Input, Label, Select, Static, TabbedContent, TabPane,
)
from textual.worker import Worker, WorkerState

from console import compute
from console.fmt import fmt_count
from console.screens.launch_composition import (
    FIELDS, PRECISIONS, PRESET_NAME, SECTION_KINDS, Composition, config_value, field_id, field_override,
    lr_test_key, optim_summary, preview_key,
)
from console.screens.launch_messages import (
    CatalogLoaded, ComputeRestarted, Launched, LrFindProgress, LrFound, PreviewReady, Resolved, Shared, TaskFailed,
)
from console.widgets.launch_panels import (
    SAMPLE_PIXELS, DataPanel, LrFinderPanel, ModelPanel, SchedulePanel, SharePanel,
)
from console.widgets.nav import NavBar
from engine.config import ExperimentConfig, to_dict
from engine.errors import EngineError
from engine.presets import PresetInfo
from engine.preview import DataSummary, ModelCost, SchedulePreview, model_input, steps_per_epoch

if TYPE_CHECKING:
    from engine.launch import RunHandle

PRESET_COSTS: dict[str, dict[str, ModelCost | str]] = {}  # every model preset's size per input, for this process


# --- the screen ------------------------------------------------------------------------------------------------

class LaunchScreen(Screen[None]):
    """Compose an experiment, check it, preview it, start it."""

    CSS_PATH = "launch.tcss"
    SUB_TITLE = "Launch"
    BINDINGS = [
        Binding("ctrl+r", "start", "Start", tooltip="start training the composition and follow it in Monitor"),
        Binding("ctrl+l", "lr_find", "LR finder", tooltip="run the LR range test on the composition and plot it"),
        Binding("ctrl+g", "apply_lr", "Apply LR", show=False,  # on the LR finder's button
                tooltip="put the LR finder's suggestion into lr"),
        Binding("ctrl+f", "fields", "Fields", tooltip="jump to the fields (lr, epochs, batch, ...)"),
        Binding("ctrl+s", "save_preset", "Save preset", tooltip="save the composition as your own experiment preset"),
        Binding("ctrl+t", "from_scratch", "From scratch",  # shown while a fine-tune is composed
                tooltip="train from scratch, not from the fine-tune's checkpoint"),
        Binding("ctrl+o", "export", "Export", show=False,  # on the Save tab's button
                tooltip="write the resolved composition to a YAML file"),
    ]
    lr_find_steps = 100  # optimizer steps of the screen's LR range test

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._requested: tuple[str, list[str]] | None = None  # a composition asked for, applied when ready
        self.composition = Composition("quickstart")
        self.config: ExperimentConfig | None = None  # the last composition that resolved
        self.problem: str | None = None  # the engine's error for the current composition, if any
        self._generation = 0  # of the composition; a resolve answer for an older one is dropped
        self._resolved_generation = -1
        self._offered_file: str | None = None  # an experiment YAML file added to the experiment picker
        self._awaiting: set[str] = set()  # fields emptied for a new composition: filled when it resolves
        self._catalog: dict[str, list[PresetInfo]] = {}
        self._section_names: dict[str, str | None] = {}  # the preset each section of the experiment names
        self._wanted: dict[str, str] = {}  # preview task -> key of the answer waited for
        self._shown: dict[str, str] = {}  # preview task -> key of what the panel shows
        self.data_summary: DataSummary | None = None
        self._data_error: str | None = None
        self._model_cost: ModelCost | None = None
        self._model_error: str | None = None  # why the composition's model cannot be built at the data's input
        self._preset_costs: dict[str, ModelCost | str] = {}  # model preset -> its size at the data's input
        self.suggested_lr: float | None = None
        self._lr_tested: str | None = None  # lr_test_key of the composition the LR range test ran on
        self.last_launch: RunHandle | None = None
        self._busy: set[str] = set()  # lrfind, launch, share: one at a time each
        self.finetune_from: str | None = None  # RUN[:CHECKPOINT] whose weights Start begins from (None: scratch)

    # --- public ---

    def compose_experiment(self, experiment: str, overrides: list[str], *, finetune_from: str | None = None) -> None:
        """Show this experiment (preset name or YAML file) with these `--set` overrides, ready to start; with
        `finetune_from` (RUN[:CHECKPOINT]) Start fine-tunes from that checkpoint's weights."""
        self._requested = (experiment, list(overrides))
        self.finetune_from = finetune_from
        if self.is_mounted:
            self._show_finetune()
        if self.is_mounted and self._catalog:
            self._apply_request()

    def use_section(self, kind: str, name: str) -> None:
        """Swap one section of the composition for a preset (`model`, `small-cnn`), keeping the rest of it."""
        if self.is_mounted and self._catalog and self._requested is None:
            self.composition.set(kind, f"{kind}={name}")
            self._edited()
            self._show_pickers()
            self._resolve()
            picker = self.query_one(f"#pick-{kind}", Select)  # in view, where a short screen may have scrolled off
            picker.focus()
            self.call_after_refresh(picker.scroll_visible)
            return
        if self._requested is not None:  # not composed yet: added to the composition asked for
            experiment, overrides = self._requested
        elif self.is_mounted:
            experiment, overrides = self.composition.experiment, self.composition.as_list()
        else:  # before the screen was ever shown: the experiment it opens with
            experiment, overrides = getattr(self.app, "experiment", "quickstart"), []
        self.compose_experiment(experiment, [*overrides, f"{kind}={name}"], finetune_from=self.finetune_from)

    # --- layout ---

    def compose(self) -> ComposeResult:
        yield NavBar()
        with Horizontal(id="launch-body"):
            with VerticalScroll(id="launch-left"):
                yield from self._compose_pickers()
                yield from self._compose_fields()
                yield Static("resolving…", id="launch-problem", markup=False)
                yield Static("", id="launch-extra", markup=False)
                yield Button("Start (ctrl+r)", id="launch-start", variant="success", action="screen.start",
                             compact=True)
                yield Static("", id="launch-status", markup=False)
            with TabbedContent(id="launch-tabs"):
                with TabPane("YAML", id="tab-yaml"), VerticalScroll(id="yaml-scroll"):
                    yield Static("resolving…", id="yaml-view")
                with TabPane("Schedule", id="tab-schedule"):
                    yield SchedulePanel()
                with TabPane("Data", id="tab-data"):
                    yield DataPanel()
                with TabPane("LR find", id="tab-lrfind"):
                    yield LrFinderPanel()
                with TabPane("Model", id="tab-model"):
                    yield ModelPanel()
                with TabPane("Save", id="tab-save"):
                    yield SharePanel()
        yield Footer()

    def _compose_pickers(self) -> ComposeResult:
        yield Label("Experiment", classes="panel-title")
        yield Static("", id="launch-finetune", markup=False)
        yield Select([], id="pick-experiment", prompt="experiment", allow_blank=True, compact=True)
        yield Static("", id="about-experiment", classes="about", markup=False)
        for kind in SECTION_KINDS:
            with Horizontal(classes="picker-row"):
                yield Label(kind, classes="row-label")
                yield Select([], id=f"pick-{kind}", name=kind, prompt="(inline)", classes="section-picker",
                             compact=True)
            yield Static("", id=f"about-{kind}", classes="about", markup=False)

    def _compose_fields(self) -> ComposeResult:
        yield Label("Fields", classes="panel-title")
        for key, label in FIELDS:
            with Horizontal(classes="field-row"):
                yield Label(label, classes="row-label")
                if key == "train.precision":
                    yield Select([(p, p) for p in PRECISIONS], id=field_id(key), name=key, allow_blank=False,
                                 compact=True)
                else:
                    yield Input(id=field_id(key), name=key, classes="field", compact=True, tooltip=key)
            yield Static("", id=f"{field_id(key)}-error", classes="field-error", markup=False)

    def on_mount(self) -> None:
        if self._requested is None:
            self._requested = (getattr(self.app, "experiment", "quickstart"), [])
        self.query_one("#pick-experiment", Select).focus()
        self._show_finetune()
        compute.shared().listen(self._compute_restarted)
        self._load_catalog()

    def on_unmount(self) -> None:
        """The app is closing: a preview or LR range test still running is abandoned, not waited for."""
        compute.shared().unlisten(self._compute_restarted)
        compute.shared().stop(only_if_busy=True)

    def _compute_restarted(self, text: str) -> None:
        """Told by the compute process (from a worker thread) when it replaced one that died."""
        self.post_message(ComputeRestarted(text))

    @on(ComputeRestarted)
    def _show_compute_restart(self, message: ComputeRestarted) -> None:
        self.notify(message.text, title="Previews", severity="warning", timeout=10)

    def on_screen_resume(self) -> None:
        if self._catalog:  # back from another screen: presets may have been imported there
            self._load_catalog()

    # --- the composition ---

    @work(thread=True, exclusive=True, group="catalog", exit_on_error=False)
    def _load_catalog(self) -> None:
        from engine.presets import list_presets

        self.post_message(CatalogLoaded(list_presets()))

    @on(CatalogLoaded)
    def _catalog_loaded(self, message: CatalogLoaded) -> None:
        self._catalog, self._offered_file = {}, None
        for info in message.presets:
            self._catalog.setdefault(info.kind, []).append(info)
        for kind in ("experiment", *SECTION_KINDS):
            select = self.query_one(f"#pick-{kind}", Select)
            with select.prevent(Select.Changed):
                select.set_options([(self._option_label(kind, info.name), info.name)
                                    for info in self._catalog.get(kind, [])])
        if self._requested is not None:
            self._apply_request()
        else:
            self._show_pickers()

    def _option_label(self, kind: str, name: str) -> str:
        """A preset's name in its picker; model presets with their size at the data's input."""
        cost = self._preset_costs.get(name) if kind == "model" else None
        if isinstance(cost, ModelCost):
            macs = fmt_count(cost.macs) if cost.macs is not None else "?"
            return f"{name} · {fmt_count(cost.params)} · {macs} MACs"
        return f"{name} · does not fit this input" if isinstance(cost, str) else name

    def _apply_request(self) -> None:
        experiment, overrides = self._requested or ("quickstart", [])
        self._requested = None
        self._edited()  # a status about the composition before (an error, `started …`) no longer applies
        self.composition = Composition.of(experiment, overrides)
        self._section_names = {}
        self._awaiting = set()
        for key, _ in FIELDS:  # fields show the new experiment's values once it resolves
            if key not in self.composition.overrides:
                self._set_field(key, "")
                self._awaiting.add(key)
            else:
                self._set_field(key, self.composition.overrides[key].partition("=")[2].strip().strip('"'))
        self._show_pickers()
        self._resolve()

    def _show_pickers(self) -> None:
        """Pickers and description lines from the composition (and the experiment's own section presets)."""
        experiment = self.composition.experiment
        select = self.query_one("#pick-experiment", Select)
        names = [info.name for info in self._catalog.get("experiment", [])]
        with select.prevent(Select.Changed):
            if experiment not in names and self._offered_file != experiment:  # a YAML file: offer it as given
                select.set_options([(experiment, experiment), *((n, n) for n in names)])
                self._offered_file = experiment
            select.value = experiment
        self._show_about("experiment", self._description("experiment", experiment))
        for kind in SECTION_KINDS:
            override = self.composition.overrides.get(kind)
            name = override.partition("=")[2].strip() if override else self._section_names.get(kind)
            picker = self.query_one(f"#pick-{kind}", Select)
            with picker.prevent(Select.Changed):
                picker.value = name if name in [i.name for i in self._catalog.get(kind, [])] else Select.NULL
            about = self._description(kind, name) if name else "inline: " + self._inline_summary(kind)
            edits = self.composition.edits_of(kind)
            if kind == "optim" and self.config is not None:  # the values that will run, the preset's words after
                about = f"{optim_summary(self.config)} · {about}"
            elif name and edits:  # the preset's words, and what the fields changed in it
                about = f"edited: {', '.join(edits)} · {about}"
            if kind == "model" and self._model_cost is not None:
                cost = self._model_cost
                macs = fmt_count(cost.macs) if cost.macs is not None else "?"
                about = f"{fmt_count(cost.params)} params, {macs} MACs · {about}"
            self._show_about(kind, about)
        extra = self.composition.extra()
        self.query_one("#launch-extra", Static).update(("--set " + " --set ".join(extra)) if extra else "")

    def _show_about(self, kind: str, text: str) -> None:
        about = self.query_one(f"#about-{kind}", Static)
        about.update(text)
        about.tooltip = text  # the line is cut to the column; the tooltip holds all of it

    def _inline_summary(self, kind: str) -> str:
        """A few words about a section the experiment writes out instead of naming a preset."""
        config = self.config
        if config is None:
            return "…"
        return {"data": lambda: f"source {config.data.source}",
                "model": lambda: config.model.name,
                "augment": lambda: f"{len(config.augment.ops)} ops, normalize {config.augment.normalize}",
                "optim": lambda: f"{config.optim.name}, lr {config.optim.lr:g}",
                "schedule": lambda: config.schedule.name}[kind]()

    def _description(self, kind: str, name: str) -> str:
        for info in self._catalog.get(kind, []):
            if info.name == name:
                origin = "" if info.origin == "builtin" else f" ({info.origin})"
                return (info.description or "(no description)") + origin
        return str(name)

    def _set_field(self, key: str, text: str) -> None:
        """Show a value in a field without it counting as an edit."""
        widget = self.query_one(f"#{field_id(key)}")
        if isinstance(widget, Select):
            with widget.prevent(Select.Changed):
                widget.value = text if text in PRECISIONS else PRECISIONS[0]
        elif isinstance(widget, Input) and widget.value != text:
            with widget.prevent(Input.Changed):
                widget.value = text

    @on(Select.Changed, "#pick-experiment")
    def _experiment_picked(self, event: Select.Changed) -> None:
        if event.value is Select.NULL:  # the list's blank line is no experiment: the composed one stays shown
            with event.select.prevent(Select.Changed):
                event.select.value = self.composition.experiment
            return
        if event.value != self.composition.experiment:
            self._edited()
            self.compose_experiment(str(event.value), [])

    @on(Select.Changed, ".section-picker")
    def _section_picked(self, event: Select.Changed) -> None:
        kind = str(event.select.name)
        own = self._section_names.get(kind)
        if event.value is Select.NULL or event.value == own:  # back to what the experiment says
            self.composition.set(kind, None)
        else:
            self.composition.set(kind, f"{kind}={event.value}")
        self._edited()
        self._show_pickers()
        self._resolve()

    @on(Input.Changed, ".field")
    def _field_edited(self, event: Input.Changed) -> None:
        key = str(event.input.name)
        text = event.value.strip()
        self._awaiting.discard(key)  # typed into: the person's value (or emptiness) from now on
        self.composition.set(key, field_override(key, text) if text else None)
        self._edited()
        self._resolve()

    @on(Select.Changed, "#field-train-precision")
    def _precision_picked(self, event: Select.Changed) -> None:
        if self.config is None or event.value == self.config.train.precision:
            return  # the picker showing the config's value (also posted when it first mounts), not an edit
        self.composition.set("train.precision", f"train.precision={event.value}")
        self._edited()
        self._resolve()

    def _edited(self) -> None:
        """A person changed the composition: a status about the one before (`started …`, an error, the LR
        finder's value) no longer applies; one for a start under way stays."""
        if "launch" not in self._busy:
            self._show_status("")

    # --- resolving ---

    def _resolve(self) -> None:
        self._generation += 1
        self._resolve_in_thread(self._generation, self.composition.experiment, self.composition.as_list())

    @work(thread=True, exclusive=True, group="resolve", exit_on_error=False)
    def _resolve_in_thread(self, generation: int, experiment: str, overrides: list[str]) -> None:
        try:
            resolved = compute.shared().call("console.compute:resolve_composition", experiment, overrides,
                                             retry=True)
            self.post_message(Resolved(generation, *resolved))
        except EngineError as exc:
            try:  # which fields are wrong on their own, to mark each (the engine stops at the first error)
                fields = compute.shared().call("console.compute:field_problems", experiment, overrides,
                                               [key for key, _ in FIELDS])
            except EngineError:
                fields = {}
            self.post_message(TaskFailed("resolve", generation, str(exc), fields))

    @on(Resolved)
    def _resolved(self, message: Resolved) -> None:
        if message.generation != self._generation:
            return  # the composition changed since
        self._resolved_generation = message.generation
        self.config = message.config
        self.problem = None
        self._section_names = message.section_names
        problem = self.query_one("#launch-problem", Static)
        problem.set_classes("ok")
        problem.update("✓ valid")
        problem.tooltip = None
        self._mark_fields({})
        for key, _ in FIELDS:
            widget = self.query_one(f"#{field_id(key)}")
            # a focused field being emptied to type a new value is left alone, unless the new composition emptied it
            if key not in self.composition.overrides and (not widget.has_focus or key in self._awaiting):
                self._set_field(key, str(config_value(message.config, key)))
        self._awaiting = set()
        self._show_pickers()
        if self.suggested_lr is not None and lr_test_key(message.config) != self._lr_tested:
            self.suggested_lr = None  # the test trained something else: its suggestion no longer applies
            self.query_one(LrFinderPanel).show_stale()
            self.refresh_bindings()
        self.query_one("#yaml-view", Static).update(Syntax(message.yaml_text, "yaml", background_color="default",
                                                               word_wrap=True))
        self._refresh_previews()

    def _show_problem(self, text: str, fields: dict[str, str] | None = None) -> None:
        """The engine's error for the composition, in the app's words (not the CLI's `--set …:` source); each
        field wrong on its own (`fields`: key → error) tinted with its error under it, and then the line under
        the fields points at them instead of repeating one."""
        text = self.composition.without_source(text)
        fields = fields or {}
        self.problem = text
        self._mark_fields(fields)
        problem = self.query_one("#launch-problem", Static)
        problem.set_classes("error")
        if fields and text in fields.values():
            problem.update("✗ fix the field marked above" if len(fields) == 1
                           else f"✗ fix the {len(fields)} fields marked above")
        else:
            problem.update(text)
        problem.tooltip = text
        focused = next((key for key in fields if self.query_one(f"#{field_id(key)}").has_focus), None)
        if focused is not None:
            error = self.query_one(f"#{field_id(focused)}-error", Static)
            self.call_after_refresh(error.scroll_visible)

    def _mark_fields(self, fields: dict[str, str]) -> None:
        """Tint the fields with an error and show it under each; clear the others."""
        for key, _ in FIELDS:
            self.query_one(f"#{field_id(key)}").set_class(key in fields, "field-problem")
            error = self.query_one(f"#{field_id(key)}-error", Static)
            error.update(fields.get(key, ""))
            error.display = key in fields

    # --- previews: data, then model size and schedule (both need the data's shape) ---

    def _refresh_previews(self) -> None:
        config = self.config
        if config is None:
            return
        data_key = preview_key(to_dict(config.data))
        if self._wanted.get("data") != data_key:
            self._wanted["data"] = data_key
            self.data_summary, self._data_error = None, None
            self._model_cost = None  # its size was for the last data's input
            self.query_one(DataPanel).show_message("loading the data…")
            self._summarize_data(data_key, config.data)
        self._refresh_model_and_schedule()

    def _refresh_model_and_schedule(self) -> None:
        config = self.config
        if config is None:
            return
        inputs = model_input(config, self.data_summary)
        if inputs is None:
            waiting = (f"the model's input size needs the data: {self._data_error}" if self._data_error
                       else "waiting for the data's input size…")
            self.query_one(ModelPanel).show_message(waiting, error=self._data_error is not None)
        else:
            key = preview_key(to_dict(config.model), inputs)
            if self._wanted.get("model") != key and self._model_cost is not None:  # another model or input
                self._model_cost = None  # no size shown for it until its own is worked out
                self._show_pickers()
            self._model_error = None if self._wanted.get("model") != key else self._model_error
            self._request("model", key, self._cost_model, config.model, *inputs)
            self._request("model-presets", preview_key(inputs), self._cost_model_presets, *inputs)
        if self.data_summary is None:
            waiting = (f"counting steps per epoch needs the data: {self._data_error}" if self._data_error
                       else "waiting for the data to count steps per epoch…")
            self.query_one(SchedulePanel).show_message(waiting, error=self._data_error is not None)
            return
        steps = steps_per_epoch(config, self.data_summary.train_images)
        key = preview_key(to_dict(config.schedule), config.optim.lr, config.train.epochs, steps)
        self._request("schedule", key, self._preview_schedule, config, steps)

    def _request(self, task: str, key: str, worker: Any, *args: Any) -> None:
        """Start `worker` for `key` unless its answer is on its way or already shown."""
        if key == self._wanted.get(task):
            return
        self._wanted[task] = key  # from now on an answer for any other key is dropped
        if key != self._shown.get(task):
            worker(key, *args)

    @work(thread=True, exclusive=True, group="data", exit_on_error=False)
    def _summarize_data(self, key: str, data: Any) -> None:
        try:
            summary = compute.shared().call("engine.preview:summarize_data", data, retry=True)
            self.post_message(PreviewReady("data", key, (summary, _pictures(summary))))
        except EngineError as exc:
            self.post_message(TaskFailed("data", key, str(exc)))

    @work(thread=True, exclusive=True, group="model", exit_on_error=False)
    def _cost_model(self, key: str, model: Any, num_classes: int, channels: int, image_size: int) -> None:
        try:
            cost = compute.shared().call("engine.preview:model_cost", model, num_classes, channels, image_size,
                                         retry=True)
            self.post_message(PreviewReady("model", key, cost))
        except EngineError as exc:
            self.post_message(TaskFailed("model", key, str(exc)))

    @work(thread=True, exclusive=True, group="model-presets", exit_on_error=False)
    def _cost_model_presets(self, key: str, num_classes: int, channels: int, image_size: int) -> None:
        from engine.presets import list_presets

        files = [(info.name, str(info.path), info.path.stat().st_mtime) for info in list_presets("model")]
        cache_key = preview_key(num_classes, channels, image_size, files)
        if cache_key not in PRESET_COSTS:  # a few seconds of model building, once per input and preset files
            PRESET_COSTS[cache_key] = compute.shared().call("engine.preview:model_preset_costs", num_classes,
                                                            channels, image_size, retry=True)
        self.post_message(PreviewReady("model-presets", key, PRESET_COSTS[cache_key]))

    @work(thread=True, exclusive=True, group="schedule", exit_on_error=False)
    def _preview_schedule(self, key: str, config: ExperimentConfig, steps: int) -> None:
        try:
            preview = compute.shared().call("engine.preview:schedule_preview", config, steps, retry=True)
            self.post_message(PreviewReady("schedule", key, preview))
        except EngineError as exc:
            self.post_message(TaskFailed("schedule", key, str(exc)))

    @on(PreviewReady)
    def _preview_ready(self, message: PreviewReady) -> None:
        if self._wanted.get(message.task) != message.key or self.config is None:
            return
        self._shown[message.task] = message.key
        if message.task == "data":
            self.data_summary, pictures = message.result
            self.query_one(DataPanel).show(self.data_summary, pictures)
            self._refresh_model_and_schedule()
        elif message.task == "model":
            self._model_cost, self._model_error = message.result, None
            self.query_one(ModelPanel).show(self.config.model.name, self.config.model.options, message.result)
            self._show_pickers()
        elif message.task == "model-presets":
            self._preset_costs = message.result
            picker = self.query_one("#pick-model", Select)
            with picker.prevent(Select.Changed):
                value = picker.value
                picker.set_options([(self._option_label("model", info.name), info.name)
                                    for info in self._catalog.get("model", [])])
                picker.value = value
        elif message.task == "schedule":
            preview: SchedulePreview = message.result
            self.query_one(SchedulePanel).show(preview, self.config.schedule.name, self.config.optim.lr)

    @on(TaskFailed)
    def _task_failed(self, message: TaskFailed) -> None:
        if message.task == "resolve":
            if message.key == self._generation:
                self._show_problem(message.message, message.fields)
        elif message.task == "model-presets":
            return  # the picker keeps plain names
        elif message.task in ("data", "model", "schedule"):
            if self._wanted.get(message.task) != message.key:
                return
            self._shown[message.task] = message.key
            panel = {"data": DataPanel, "model": ModelPanel, "schedule": SchedulePanel}[message.task]
            self.query_one(panel).show_message(message.message, error=True)
            if message.task == "data":
                self._data_error = message.message
                self._model_cost = None
                self._show_pickers()  # the model's line loses a size it no longer has
                self._refresh_model_and_schedule()
            elif message.task == "model":
                self._model_cost, self._model_error = None, message.message
        else:  # an action (lrfind, launch, share) or the catalog
            self._busy.discard(message.task)
            self._action_failed(message.task, message.message)

    def _action_failed(self, task: str, text: str) -> None:
        """An action's error where the action was asked for, as the CLI prints it."""
        if task == "lrfind":
            self.query_one(LrFinderPanel).show_message(f"error: {text}", error=True)
        elif task == "share":
            self.query_one(SharePanel).show_status(f"error: {text}", error=True)
        elif task == "launch" and text == self._data_error:  # the Data tab has it, with room for the file names
            self._show_status("error: the data is not there; the Data tab says where its files go", error=True)
            self.query_one("#launch-tabs", TabbedContent).active = "tab-data"
        else:
            self._show_status(f"error: {text}", error=True)

    def _show_status(self, text: str, *, error: bool = False) -> None:
        status = self.query_one("#launch-status", Static)
        status.set_class(error, "error")
        status.update(text)
        if text:
            self.call_after_refresh(status.scroll_visible)  # once its new height is laid out

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed with something other than an engine error (a bug): shown where its answer would
        have gone, with the exception's type; the app stays up."""
        if event.state != WorkerState.ERROR:
            return
        group, error = event.worker.group, event.worker.error
        key = self._generation if group == "resolve" else self._wanted.get(group)
        self._task_failed(TaskFailed(group, key, f"{type(error).__name__}: {error}"))

    # --- actions ---

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "apply_lr":
            return True if self.suggested_lr else None
        if action == "from_scratch":
            return self.finetune_from is not None
        return True

    def _show_finetune(self) -> None:
        line = self.query_one("#launch-finetune", Static)
        line.display = self.finetune_from is not None
        if self.finetune_from is not None:
            line.update(f"fine-tune from {Path(self.finetune_from).name}:best (ctrl+t: from scratch)")
        self.refresh_bindings()

    def action_fields(self) -> None:
        """Focus the first field (lr), scrolled into view: the pickers above it are seven Tabs away."""
        first = self.query_one(f"#{field_id(FIELDS[0][0])}", Input)
        first.focus()
        first.scroll_visible()

    def action_from_scratch(self) -> None:
        """Start the composition from scratch, not from the fine-tune's weights."""
        self.finetune_from = None
        self._show_finetune()

    def action_start(self) -> None:
        """Start training the composition in a child process, then follow it in Monitor."""
        if self.problem is not None:
            self._show_status(f"error: {self.problem}", error=True)
            return
        if self._model_error is not None:  # the model cannot be built for this data: it would fail at once
            self._show_status("error: the model does not fit this data; the Model tab says why", error=True)
            self.query_one("#launch-tabs", TabbedContent).active = "tab-model"
            return
        if "launch" in self._busy:
            return
        self._busy.add("launch")
        self._show_status("starting…")
        runs_root = Path(self.app.runs_root)  # type: ignore[attr-defined]
        self._launch(self.composition.experiment, self.composition.as_list(), runs_root, self.finetune_from)

    @work(thread=True, group="launch", exit_on_error=False)
    def _launch(self, experiment: str, overrides: list[str], runs_root: Path, finetune_from: str | None) -> None:
        try:  # checks and the run folder in the compute process; the training process is started from here
            run_dir, parent = compute.shared().call("console.compute:prepare_launch", experiment, overrides,
                                                    runs_root, finetune_from)
            self.post_message(Launched(compute.start_prepared(run_dir, parent)))
        except EngineError as exc:
            self.post_message(TaskFailed("launch", None, str(exc)))

    @on(Launched)
    def _launched(self, message: Launched) -> None:
        self._busy.discard("launch")
        self.last_launch = message.handle
        self._show_status(f"started {message.handle.run_dir.name}")
        self.app.monitor_run(message.handle.run_dir, message.handle)  # type: ignore[attr-defined]

    def action_lr_find(self) -> None:
        """Run the LR range test on the composition (in a worker) and plot it."""
        self.query_one("#launch-tabs", TabbedContent).active = "tab-lrfind"
        panel = self.query_one(LrFinderPanel)
        if self.problem is not None:
            panel.show_message(f"error: {self.problem}", error=True)
            return
        if self.config is None or self._resolved_generation != self._generation:
            panel.show_message("still checking the composition: try again in a moment")
            return
        if "lrfind" in self._busy:
            return
        self._busy.add("lrfind")
        self._lr_tested = lr_test_key(self.config)
        panel.show_message(f"LR range test on {self.config.name}: {self.lr_find_steps} steps…")
        self._find_lr(self.config, self.lr_find_steps)

    @work(thread=True, group="lrfind", exit_on_error=False)
    def _find_lr(self, config: ExperimentConfig, steps: int) -> None:
        def progress(done: int, total: int, lr: float) -> None:
            self.post_message(LrFindProgress(done, total, lr))

        try:
            result = compute.shared().call("engine.lr_find:lr_range_test", config, steps=steps, progress=progress)
            self.post_message(LrFound(result, steps))
        except EngineError as exc:
            self.post_message(TaskFailed("lrfind", None, str(exc)))

    @on(LrFindProgress)
    def _lr_find_progress(self, message: LrFindProgress) -> None:
        if "lrfind" in self._busy:
            self.query_one(LrFinderPanel).show_progress(message.done, message.total, message.lr)

    @on(LrFound)
    def _lr_found(self, message: LrFound) -> None:
        self._busy.discard("lrfind")
        self.suggested_lr = message.result["suggested_lr"]
        self.query_one(LrFinderPanel).show_result(message.result["series"], self.suggested_lr, message.steps)
        self.refresh_bindings()

    def action_apply_lr(self) -> None:
        """Put the LR finder's suggestion into optim.lr."""
        if not self.suggested_lr:
            return
        text = f"{self.suggested_lr:.3g}"
        self._set_field("optim.lr", text)
        self.composition.set("optim.lr", f"optim.lr={text}")
        self._show_status(f"optim.lr = {text} (the LR finder's suggestion)")
        self._resolve()

    def action_save_preset(self) -> None:
        """Save the composition as a user experiment preset."""
        self.query_one("#launch-tabs", TabbedContent).active = "tab-save"
        name = self.query_one("#preset-name", Input).value.strip()
        if not PRESET_NAME.match(name):
            self.query_one(SharePanel).show_status(
                "error: give the preset a name (letters, digits, '.', '_', '-')", error=True)
            self.query_one("#preset-name", Input).focus()
            return
        overwrite = self.query_one("#preset-overwrite", Checkbox).value
        self._share(self.composition.experiment, self.composition.as_list(), preset=name, overwrite=overwrite)

    def action_export(self) -> None:
        """Write the resolved composition to a YAML file."""
        self.query_one("#launch-tabs", TabbedContent).active = "tab-save"
        path = self.query_one("#export-path", Input).value.strip()
        if not path:
            self.query_one(SharePanel).show_status("error: give a file path to export to", error=True)
            self.query_one("#export-path", Input).focus()
            return
        self._share(self.composition.experiment, self.composition.as_list(), export=Path(path).expanduser())

    @work(thread=True, group="share", exit_on_error=False)
    def _share(self, experiment: str, overrides: list[str], *, preset: str | None = None,
               overwrite: bool = False, export: Path | None = None) -> None:
        try:
            text = compute.shared().call("console.compute:share_composition", experiment, overrides, preset=preset,
                                         overwrite=overwrite, export=export)
            self.post_message(Shared(text, saved_preset=preset is not None))
        except (EngineError, OSError) as exc:
            self.post_message(TaskFailed("share", None, str(exc)))

    @on(Shared)
    def _shared(self, message: Shared) -> None:
        self.query_one(SharePanel).show_status(message.text)
        if message.saved_preset:
            self._load_catalog()  # the new preset joins the experiment picker


def _pictures(summary: DataSummary) -> list[tuple[str, RenderableType]]:
    """The summary's sample images as terminal pictures (built in the worker: resizing is not free)."""
    from PIL import Image
    from rich_pixels import Pixels

    pictures: list[tuple[str, RenderableType]] = []
    for name, array in summary.samples:
        image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).convert("RGB")
        height = max(2, round(SAMPLE_PIXELS * image.height / image.width))
        resample = Image.Resampling.NEAREST if image.width < SAMPLE_PIXELS else Image.Resampling.BILINEAR
        pictures.append((name, Pixels.from_image(image.resize((SAMPLE_PIXELS, height), resample))))
    return pictures
