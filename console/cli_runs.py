"""`runs`: list, show, compare and diff run folders; a run's note and tags."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from console.common import (
    RUN_RULE, JsonOption, RunsDirOption, err_console, escape, fmt_count, fmt_pct, fmt_seconds, out_console, print_json,
    reports_errors,
)
from console.fmt import NO_VALUE, fmt_fixed, fmt_lr, fmt_model, fmt_text, plural, terminal_width

if TYPE_CHECKING:
    from rich.table import Table

    from engine.annotations import Annotations
    from engine.runs import RunInfo

app = typer.Typer(help="List and inspect runs (one folder per run).", no_args_is_help=True)

STATE_STYLE = {"finished": "green", "running": "cyan", "failed": "red", "diverged": "red", "interrupted": "yellow"}


@app.command("list")
@reports_errors
def list_cmd(
    runs_dir: RunsDirOption = None,
    state: Annotated[str | None, typer.Option("--state", help="Only runs in this state.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only runs carrying this tag.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Table of runs: name, state, data, model preset, epochs, best val acc, test acc, params, time, tags (on a narrow
    terminal the last ones are left out: the names are never cut)."""
    from engine.annotations import check_tag, matches_tag, read_annotations
    from engine.compare import model_preset_label, model_presets
    from engine.errors import RunError
    from engine.runs import STATES, list_runs
    from engine.runs import runs_dir as pick_runs_dir

    if state is not None and state not in STATES:
        raise RunError(f"--state {state}: not a run state; states are {', '.join(STATES)}")
    if tag is not None:
        tag = check_tag(tag)
    root = pick_runs_dir(runs_dir)
    annotated = [(r, read_annotations(r.path)) for r in list_runs(root) if state is None or r.state == state]
    annotated = [(r, a) for r, a in annotated if tag is None or matches_tag(a, tag)]
    presets: list[tuple[str, dict]] | None = None

    def model_label(run: RunInfo) -> str | None:  # recorded when the run started; an older run's worked out here
        nonlocal presets
        if "model_preset" in run.status:
            return run.status["model_preset"]
        presets = model_presets() if presets is None else presets
        return model_preset_label(run.path, presets)

    models = [model_label(r) for r, _a in annotated]
    if json_out:
        print_json([{"name": r.name, "path": str(r.path), **r.status, "model_preset": m, "note": a.note,
                     "tags": a.tags} for (r, a), m in zip(annotated, models)])
        return
    if not annotated:
        out_console.print(f"no runs in {root}" + (f" tagged {tag}" if tag else ""), highlight=False)
        return
    print_run_list(annotated, models)
    for run, _notes in annotated:
        if run.status.get("damaged"):
            err_console.print(f"[yellow]warning:[/] {run.name}: {escape(str(run.status.get('reason')))}",
                              highlight=False, soft_wrap=True)


NAME_FOLDED_AT = 36  # a run name longer than this is folded onto more lines before a column is left out for it
LIST_DROPPED_FIRST = ("tags", "params", "time", "data", "epochs", "model")  # left out, in this order, to fit the terminal


def print_run_list(annotated: list[tuple[RunInfo, Annotations]], models: list[str | None]) -> None:
    """The `runs list` table; the model column names the model preset (`name*`: changed), else the architecture.
    Names are never cut: on a narrow terminal the least wanted columns are left out (and named), then a name too
    long for what is left is folded onto more lines."""
    import click
    from rich.table import Column, Table

    headers = ["name", "state", "data", "model", "epochs", "best val", "test", "params", "time", "tags"]
    rows = []
    for (run, notes), model in zip(annotated, models):
        s = run.status
        rows.append([run.name.replace("/", "/\n"), run.state, run.data or NO_VALUE, model or run.model or NO_VALUE,
                     f"{fmt_text(s.get('epoch'))}/{fmt_text(s.get('epochs'))}", fmt_pct(s.get("best_val_acc")),
                     fmt_pct(s.get("test_acc")), fmt_count(s.get("params")), fmt_seconds(s.get("wall_s")),
                     " ".join(notes.tags)])
    context = click.get_current_context(silent=True)
    width = terminal_width(context.terminal_width if context else None)
    kept = list(range(len(headers)))

    def needed(columns: list[int], name_cap: int | None = None) -> int:  # a rich table's width: cells, padding, borders
        widths = {c: max(len(headers[c]), *(len(line) for row in rows for line in row[c].split("\n")))
                  for c in columns}
        if name_cap and 0 in widths:
            widths[0] = min(widths[0], name_cap)
        return sum(w + 3 for w in widths.values()) + 1

    dropped = []
    for name in LIST_DROPPED_FIRST:
        if needed(kept, name_cap=NAME_FOLDED_AT) <= width:  # a longer name is folded rather than columns left out
            break
        kept.remove(headers.index(name))
        dropped.append(name)
    # a name wider than what the kept columns leave is folded onto more lines (never cut: it is typed back)
    room = width - (needed([c for c in kept if c != 0]) - 1) - 4
    name_column = Column("name", no_wrap=needed(kept) <= width, overflow="fold",
                         max_width=max(room, 12) if needed(kept) > width else None)
    table = Table(*(name_column if c == 0 else Column(headers[c]) for c in kept))
    for row in rows:
        cells = {c: escape(row[c]) for c in kept}
        if 1 in cells and STATE_STYLE.get(row[1]):
            cells[1] = f"[{STATE_STYLE[row[1]]}]{cells[1]}[/]"
        table.add_row(*(cells[c] for c in kept))
    print_at_width(table, width)
    if dropped:
        print_at_width(f"left out at {width} columns: {', '.join(dropped)} (see --json)", width)
    if any(m and m.endswith("*") for m in models):
        out_console.print("model*: that preset with settings changed (`runs show RUN --config` has them all)",
                          highlight=False)


@app.command()
@reports_errors
def show(
    run: Annotated[str, typer.Argument(metavar="RUN", help=RUN_RULE)],
    runs_dir: RunsDirOption = None,
    config: Annotated[bool, typer.Option("--config", help="Also print the run's full config.yaml (last).")] = False,
    json_out: JsonOption = False,
) -> None:
    """A run's status and metrics, what made it, its epochs, checkpoints and evaluations (a k-fold group: its
    per-fold table and ensemble); `--config` adds the resolved config."""
    from engine.compare import group_match
    from engine.runs import resolve_run
    from engine.runs import runs_dir as pick_runs_dir

    group = group_match(pick_runs_dir(runs_dir), run)
    if group is not None:
        show_group(group, json_out)
        return
    run_dir = resolve_run(pick_runs_dir(runs_dir), run)
    if json_out:
        print_json(run_summary(run_dir))
        return
    show_run(run_dir, with_config=config)


def show_group(group: Path, json_out: bool) -> None:
    """`runs show` of a k-fold group: its record (per-fold table, ensemble), note and tags, what made its folds."""
    from console.cli_eval import show_kfold
    from engine.annotations import read_annotations
    from engine.kfold import read_record
    from engine.provenance import describe_environment, read_environment
    from engine.runs import RunFolder

    record = read_record(group)
    notes = read_annotations(group)
    if json_out:
        print_json({**record, "note": notes.note, "tags": notes.tags})
        return
    out_console.print(f"[bold]{escape(group.name)}[/]  {record.get('state')}  ({escape(str(group))})", highlight=False)
    out_console.print(f"k-fold of experiment {fmt_text(record.get('experiment'))}: "
                      f"{len(record.get('per_fold') or [])} of {fmt_text(record.get('folds'))} folds recorded",
                      highlight=False)
    if record.get("state") in ("interrupted", "failed"):  # how to go on, as the k-fold's own stop message says
        error = f": {record['error']}" if record.get("error") else ""
        err_console.print(f"[yellow]{record.get('state')}[/]{escape(error)}; `imgcls-console resume {group.name}` "
                          "finishes it", highlight=False, soft_wrap=True)
    show_kfold(record)
    print_annotations(notes)
    envs = [read_environment(RunFolder(group / str(fold.get("run"))).environment) for fold in record["per_fold"]]
    if len({tuple(describe_environment(env)) for env in envs}) > 1:
        out_console.print("made with: differs between the folds (`runs show FOLD` for each)", highlight=False)
    elif envs:
        print_environment(envs[0])


def run_summary(run_dir: Path) -> dict[str, Any]:
    """What `runs show --json` prints: status, epochs, checkpoints, evaluations, environment, note and tags."""
    from engine.annotations import read_annotations
    from engine.checkpoint import damaged_checkpoints, list_checkpoints
    from engine.ensemble import list_evals
    from engine.provenance import read_environment
    from engine.runs import RunFolder, epoch_rows, read_status

    notes = read_annotations(run_dir)
    return {"run_dir": str(run_dir), "status": read_status(run_dir), "epochs": epoch_rows(run_dir),
            "checkpoints": [{"name": c["name"], "epoch": c.get("epoch")} for c in list_checkpoints(run_dir)],
            "damaged_checkpoints": damaged_checkpoints(run_dir),
            "evals": list_evals(run_dir), "environment": read_environment(RunFolder(run_dir).environment),
            "note": notes.note, "tags": notes.tags}


def show_run(run_dir: Path, *, with_config: bool) -> None:
    """The human form of `runs show`: status and metrics first, then what made the run, the epochs, checkpoints
    and evaluations; the config only when asked for."""
    from engine.annotations import read_annotations
    from engine.runs import RunFolder

    summary = run_summary(run_dir)
    status = summary["status"]
    out_console.print(f"[bold]{escape(run_dir.name)}[/]  {status.get('state')}  ({escape(str(run_dir))})",
                      highlight=False)
    if status.get("damaged"):  # the summary is lost; the run's records below are not
        err_console.print(f"[yellow]warning:[/] {escape(str(status.get('reason')))}; the epochs, checkpoints and "
                          "config below are the run's own (a resume writes the status again)", highlight=False,
                          soft_wrap=True)
    if "model_preset" not in status:  # a run from before runs recorded it
        from engine.compare import model_preset_label, model_presets

        status = {**status, "model_preset": model_preset_label(run_dir, model_presets())}
    out_console.print(what_line(status), highlight=False)
    out_console.print(status_line(status), highlight=False)
    print_annotations(read_annotations(run_dir))
    print_environment(summary["environment"])
    done = status.get("epoch")
    if summary["epochs"]:
        print_epochs(summary["epochs"])
    elif not done:
        out_console.print("epochs: none finished yet", highlight=False)
    if isinstance(done, int) and len(summary["epochs"]) < done:  # the events lost some (cut, or damaged lines)
        err_console.print(f"[yellow]warning:[/] {RunFolder(run_dir).events.name} holds {len(summary['epochs'])} of "
                          f"the {done} epochs trained (cut or damaged): the table lacks the others", highlight=False)
    checkpoints = summary["checkpoints"]
    if checkpoints:
        out_console.print("checkpoints: " + ", ".join(f"{c['name']} (epoch {fmt_text(c.get('epoch'))})"
                                                      for c in checkpoints), highlight=False)
    for why in summary["damaged_checkpoints"].values():  # left out above: say so, not list fewer in silence
        err_console.print(f"[yellow]warning:[/] {escape(why)}", highlight=False, soft_wrap=True)
    if summary["evals"]:
        show_evals(summary["evals"])
    config_path = RunFolder(run_dir).config
    if not config_path.is_file():
        return
    if with_config:
        out_console.rule("config.yaml")
        out_console.print(config_path.read_text(encoding="utf-8"), highlight=False, markup=False)
    else:
        out_console.print(f"config: {escape(str(config_path))} (--config prints it)", highlight=False)


def what_line(status: dict[str, Any]) -> str:
    """`experiment quickstart · data digits · model small-cnn (convnet) · epoch 4 of 15`: what the run trains."""
    parts = [f"experiment {fmt_text(status.get('experiment'))}", f"data {fmt_text(status.get('data'))}",
             f"model {fmt_model(status.get('model_preset'), status.get('model'))}",
             f"epoch {fmt_text(status.get('epoch'))} of {fmt_text(status.get('epochs'))}"]
    parent = status.get("parent")
    if parent:  # a fine-tune's weights (RUN:CHECKPOINT), or a fold's k-fold group
        parts.append(f"from {parent}" if ":" in str(parent) else f"in {parent}")
    return " · ".join(parts)


def status_line(status: dict[str, Any]) -> str:
    """`best val_loss 0.0133 at epoch 4; best val acc 97.31%; test acc 96.50%; 21.5K params; 3s`."""
    metric = status.get("best_metric")
    best = status.get("best_value")
    shown = fmt_pct(best) if isinstance(metric, str) and metric.endswith("acc") else fmt_fixed(best)
    parts = [f"best {metric} {shown} at epoch {fmt_text(status.get('best_epoch'))}" if metric and best is not None
             else "no best checkpoint yet"]
    if not (metric == "val_acc" and best is not None):  # else that was it
        parts.append(f"best val acc {fmt_pct(status.get('best_val_acc'))}")
    parts.append(f"test acc {fmt_pct(status.get('test_acc'))}")
    if status.get("params") is not None:
        parts.append(f"{fmt_count(status.get('params'))} params")
    if status.get("wall_s") is not None:
        parts.append(fmt_seconds(status.get("wall_s")))
    return "; ".join(parts)


def print_environment(env: dict[str, Any] | None) -> None:
    """The short `made with` block (one line when the run predates environment records)."""
    from engine.provenance import describe_environment

    rows = describe_environment(env)
    if not rows:
        out_console.print("made with: not recorded", highlight=False)
        return
    out_console.print("made with:", highlight=False)
    for label, value in rows:
        out_console.print(f"  {label:<9} {escape(value)}", highlight=False)


def print_epochs(rows: list[dict[str, Any]]) -> None:
    """The per-epoch table of `runs show`."""
    from rich.table import Table

    table = Table("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "time", title="epochs")
    for row in rows:
        table.add_row(str(row["epoch"]), fmt_fixed(row.get("train_loss")), fmt_pct(row.get("train_acc")),
                      fmt_fixed(row.get("val_loss")), fmt_pct(row.get("val_acc")), fmt_lr(row.get("lr")),
                      fmt_seconds(row.get("epoch_s")))
    out_console.print(table)


def print_annotations(notes: Annotations) -> None:
    """The note and tags lines of `runs show` (nothing when the run has neither)."""
    if notes.tags:
        out_console.print(f"tags: {escape(', '.join(notes.tags))}", highlight=False)
    if notes.note:
        out_console.print(f"note: {escape(notes.note)}", highlight=False)


def show_evals(evals: list[dict]) -> None:
    """The run's saved evaluations: checkpoint, split, TTA, combine and metrics."""
    from rich.table import Table

    table = Table("checkpoint", "epoch", "split", "tta", "combine", "ema", "accuracy", "top-5", "loss", "images",
                  title="evaluations")
    for record in evals:
        table.add_row(fmt_text(record.get("checkpoint")), fmt_text(record.get("epoch")),
                      fmt_text(record.get("split")), fmt_text(record.get("tta")), fmt_text(record.get("combine")),
                      "yes" if record.get("use_ema") else "no", fmt_pct(record.get("accuracy")),
                      fmt_pct(record.get("top5")), fmt_fixed(record.get("loss")), fmt_text(record.get("count")))
    out_console.print(table)


StateFilter = Annotated[str | None, typer.Option("--state", help="Only runs in this state (finished, failed, ...).")]
DataFilter = Annotated[str | None, typer.Option("--data", help="Only runs on this data source (prefix).")]
ModelFilter = Annotated[str | None, typer.Option("--model", help="Only runs of this model (prefix).")]


@app.command()
@reports_errors
def compare(
    runs: Annotated[list[str] | None, typer.Argument(metavar="RUN", help="Runs or k-fold groups (default: all runs). " + RUN_RULE)] = None,
    sort: Annotated[str | None, typer.Option("--sort", help="Sort by a metric (test_acc, best_val_acc, wall_s, "
                                                            "params, ...) or a differing config key.")] = None,
    descending: Annotated[bool, typer.Option("--desc", help="Sort from largest to smallest.")] = False,
    all_keys: Annotated[bool, typer.Option("--all", help="Every config key as its own column, the same ones too, "
                                                         "at full width (for a file or `less -S`).")] = False,
    state: StateFilter = None,
    data: DataFilter = None,
    model: ModelFilter = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """Runs side by side: their metrics and the config keys that differ between them, fitted to the terminal
    (one column per key; per config section, or all in one column, when that is too wide)."""
    import click

    from engine.compare import compare_runs, run_config, select_runs
    from engine.runs import runs_dir as pick_runs_dir

    chosen = select_runs(pick_runs_dir(runs_dir), list(runs or []), state=state, data=data, model=model)
    result = compare_runs(chosen, sort=sort, descending=descending, all_keys=all_keys)
    if json_out:
        print_json(result)
        return
    if not chosen:
        out_console.print("no runs match", highlight=False)
        return
    configs = [run_config(Path(row["path"])) for row in result["rows"]]
    context = click.get_current_context(silent=True)
    width = terminal_width(context.terminal_width if context else None)
    layout = full_layout(result, configs) if all_keys else fit_layout(result, configs, width)
    print_at_width(layout.table(), max(width, layout.width()) if all_keys else width)
    print_at_width(escape("\n".join(compare_notes(result, layout, all_keys))), width)


@dataclass
class TableColumn:
    """One column of a fitted table: its cells and the narrowest it may be (wrapping cells beyond that)."""

    header: str
    cells: list[str]
    cap: int | None = None  # the column may be squeezed to this many characters (None: never squeezed)
    justify: str = "left"
    no_wrap: bool = False  # run names: never broken

    @property
    def natural(self) -> int:
        return max(len(line) for text in [self.header, *self.cells] for line in text.splitlines() or [""])

    @property
    def title(self) -> str:
        """The header, broken after its section (`model` / `batch_norm`) when the column may be narrower."""
        narrow = self.cap is not None and len(self.header) > self.cap
        return self.header.replace(".", "\n", 1) if narrow else self.header

    @property
    def least(self) -> int:
        """The narrowest width: the natural one for unsqueezable columns (rich keeps those whole), else the cap."""
        return self.natural if self.cap is None else min(self.natural, self.cap)


@dataclass
class CompareLayout:
    """The columns chosen for `runs compare`, and how (grouping: see engine.compare.config_columns)."""

    columns: list[TableColumn]
    grouping: str
    dropped: list[str]  # metric columns left out to fit
    hidden_state: str | None  # the one state of every run, when the state column was left out

    def width(self, least: bool = False) -> int:
        """Characters the table needs (borders and padding included) at natural or at least width."""
        return sum(c.least if least else c.natural for c in self.columns) + 3 * len(self.columns) + 1

    def table(self) -> Table:
        """The rich table (run names never wrapped, config cells wrapped or folded)."""
        from rich.table import Column, Table

        columns = [Column(escape(c.title), no_wrap=c.no_wrap, min_width=c.least, overflow="fold",
                          justify=c.justify) for c in self.columns]  # type: ignore[arg-type]
        table = Table(*columns)
        for index in range(len(self.columns[0].cells)):
            table.add_row(*[escape(c.cells[index]) for c in self.columns])
        return table


OPTIONAL_METRICS = ("epochs", "params", "time")  # left out first when the terminal is narrow
CONFIG_CAPS = {"key": 12, "section": 14, "one": 24}
LAYOUTS = (("key", True), ("key", False), ("section", True), ("section", False), ("one", False))


def metric_columns(result: dict[str, Any], optional: bool) -> tuple[list[TableColumn], str | None]:
    """The run and metric columns (a state all runs share, and metrics no run has, are left out)."""
    rows = result["rows"]
    metrics = [r["metrics"] for r in rows]
    states = {m["state"] for m in metrics}
    columns = [TableColumn("run", [r["name"] for r in rows], no_wrap=True)]
    if len(states) > 1:
        columns.append(TableColumn("state", [m["state"] for m in metrics]))
    candidates = [("best val acc", [fmt_pct(m["best_val_acc"]) for m in metrics]),
                  ("test acc", [fmt_pct(m["test_acc"]) for m in metrics])]
    if optional:
        candidates += [("epochs", [fmt_text(m.get("epoch")) for m in metrics]),
                       ("params", [fmt_count(m["params"]) for m in metrics]),
                       ("time", [fmt_seconds(m["wall_s"]) for m in metrics])]
    columns += [TableColumn(h, cells, justify="right") for h, cells in candidates if set(cells) != {NO_VALUE}]
    return columns, (next(iter(states)) if len(states) == 1 else None)


def fit_layout(result: dict[str, Any], configs: list[dict[str, Any]], width: int) -> CompareLayout:
    """The first layout of LAYOUTS whose table fits `width` columns (else the narrowest)."""
    from engine.compare import config_columns

    layout = None
    for grouping, optional in LAYOUTS:
        columns, state = metric_columns(result, optional)
        joiner = "\n" if grouping == "section" else "; "  # a narrow section column lists one setting a line
        columns += [TableColumn(h, cells, cap=CONFIG_CAPS[grouping])
                    for h, cells in config_columns(configs, result["keys"], grouping, joiner)]
        layout = CompareLayout(columns, grouping, [] if optional else _optional_shown(result), state)
        if layout.width(least=True) <= width:
            return layout
    assert layout is not None
    layout = shorten_names(layout)
    settings = layout.columns[-1]
    if settings.cap is not None:  # the settings column takes what is left, wrapping its text
        settings.cap = max(8, width - (layout.width() - settings.natural))
    return layout


def _optional_shown(result: dict[str, Any]) -> list[str]:
    """The optional metric columns a layout with them would show (what leaving them out leaves out)."""
    return [c.header for c in metric_columns(result, True)[0] if c.header in OPTIONAL_METRICS]


def full_layout(result: dict[str, Any], configs: list[dict[str, Any]]) -> CompareLayout:
    """`--all`: every metric, and every config key under its full dotted name, nothing squeezed."""
    from engine.compare import compact_value

    columns, state = metric_columns(result, True)
    columns += [TableColumn(key, [compact_value(c.get(key), key) for c in configs]) for key in result["keys"]]
    return CompareLayout(columns, "key", [], state)


def shorten_names(layout: CompareLayout) -> CompareLayout:
    """Run names without their time stamp, when that keeps them apart (the last resort of a narrow terminal)."""
    names = layout.columns[0].cells
    stems = [re.sub(r"-\d{8}-\d{6}(-\d+)?$", "", name) for name in names]
    if len(set(stems)) == len(stems):
        layout.columns[0] = TableColumn("run (no time stamp)", stems, no_wrap=True)
    return layout


def print_at_width(renderable: object, width: int) -> None:
    """Print on stdout laid out for `width` columns (wider than the shared console for `--all`)."""
    from rich.console import Console

    Console(width=width, highlight=False, emoji=False).print(renderable)


def compare_notes(result: dict[str, Any], layout: CompareLayout, all_keys: bool) -> list[str]:
    """The lines under the table: the shared state, what differs, and what was folded to fit."""
    count = len(result["keys"])
    runs = len(result["rows"])
    lines = [f"{plural(runs, 'run')}, {'all ' if runs > 1 else ''}{layout.hidden_state}"] if layout.hidden_state else []
    if all_keys:
        return lines + [f"{plural(count, 'config key')} (--all)"]
    if not count:
        return lines + ["the runs' configs are the same"]
    said = f"{plural(count, 'config key')} {'differs' if count == 1 else 'differ'}"
    if layout.grouping != "key":
        said += "; grouped by section to fit" if layout.grouping == "section" else "; in one column to fit"
    if layout.dropped:
        said += f"; {', '.join(layout.dropped)} left out"
    return lines + [said + (" (--all: one column per key)" if layout.grouping != "key" or layout.dropped else "")]


@app.command()
@reports_errors
def diff(
    run_a: Annotated[str, typer.Argument(metavar="A", help="First run.")],
    run_b: Annotated[str, typer.Argument(metavar="B", help="Second run.")],
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """The config differences of two runs (dotted keys)."""
    from rich.table import Table

    from engine.compare import diff_runs
    from engine.runs import resolve_run
    from engine.runs import runs_dir as pick_runs_dir

    root = pick_runs_dir(runs_dir)
    path_a, path_b = resolve_run(root, run_a), resolve_run(root, run_b)
    rows = diff_runs(path_a, path_b)
    if json_out:
        print_json({"a": str(path_a), "b": str(path_b), "differences": rows})
        return
    if not rows:
        out_console.print(f"{path_a.name} and {path_b.name} have the same config", highlight=False)
        return
    import click
    from rich.table import Column

    from engine.compare import compact_value

    # laid out for the terminal: a long run name or value folds onto more lines, whole (the keys never break)
    table = Table(Column("key", no_wrap=True), Column(escape(path_a.name), overflow="fold"),
                  Column(escape(path_b.name), overflow="fold"))
    for row in rows:
        table.add_row(row["key"], escape(compact_value(row["a"], row["key"])),
                      escape(compact_value(row["b"], row["key"])))
    context = click.get_current_context(silent=True)
    print_at_width(table, terminal_width(context.terminal_width if context else None))


RunArgument = Annotated[str, typer.Argument(metavar="RUN", help="Run or k-fold group. " + RUN_RULE)]


def _annotated_folder(root_option: Path | None, name: str) -> Path:
    """The folder a note or tags go to: a k-fold group, else a run."""
    from engine.compare import group_match
    from engine.runs import resolve_run
    from engine.runs import runs_dir as pick_runs_dir

    root = pick_runs_dir(root_option)
    return group_match(root, name) or resolve_run(root, name)


@app.command()
@reports_errors
def note(
    run: RunArgument,
    text: Annotated[str, typer.Argument(metavar="TEXT", help='The note (replaces the old one; "" clears it).')],
    runs_dir: RunsDirOption = None,
) -> None:
    """Set a run's free-text note (kept in its folder as notes.json; shown by `runs show` and in reports)."""
    from engine.annotations import write_annotations

    folder = _annotated_folder(runs_dir, run)
    result = write_annotations(folder, note=text)
    said = f"note of {folder.name}: {result.note}" if result.note else f"note of {folder.name} cleared"
    err_console.print(escape(said), highlight=False)


@app.command()
@reports_errors
def tag(
    run: RunArgument,
    tags: Annotated[list[str], typer.Argument(metavar="TAG...", help="Plain words, e.g. baseline lr-sweep.")],
    remove: Annotated[bool, typer.Option("--remove", help="Remove these tags instead of adding them.")] = False,
    runs_dir: RunsDirOption = None,
) -> None:
    """Add tags to a run (or remove them with --remove); `runs list --tag T` filters by them."""
    from engine.annotations import add_tags, remove_tags

    folder = _annotated_folder(runs_dir, run)
    result = remove_tags(folder, tags) if remove else add_tags(folder, tags)
    err_console.print(escape(f"tags of {folder.name}: {', '.join(result.tags) or '(none)'}"), highlight=False)
