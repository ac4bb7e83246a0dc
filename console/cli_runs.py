"""`runs`: list, show, compare and diff run folders; a run's note and tags."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from console.common import (
    JsonOption, RunsDirOption, err_console, escape, fmt_count, fmt_pct, fmt_seconds, out_console, print_json,
    reports_errors,
)

if TYPE_CHECKING:
    from engine.annotations import Annotations

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
    """Table of runs: name, state, data, model, epochs, best val acc, test acc, params, time, tags."""
    from rich.table import Table

    from engine.runs import list_runs
    from engine.runs import runs_dir as pick_runs_dir

    from engine.errors import RunError
    from engine.runs import STATES

    if state is not None and state not in STATES:
        raise RunError(f"--state {state}: not a run state; states are {', '.join(STATES)}")
    from engine.annotations import check_tag, matches_tag, read_annotations

    if tag is not None:
        tag = check_tag(tag)
    root = pick_runs_dir(runs_dir)
    annotated = [(r, read_annotations(r.path)) for r in list_runs(root) if state is None or r.state == state]
    annotated = [(r, a) for r, a in annotated if tag is None or matches_tag(a, tag)]
    if json_out:
        print_json([{"name": r.name, "path": str(r.path), **r.status, "note": a.note, "tags": a.tags}
                    for r, a in annotated])
        return
    if not annotated:
        out_console.print(f"no runs in {root}" + (f" tagged {tag}" if tag else ""), highlight=False)
        return
    table = Table("name", "state", "data", "model", "epochs", "best val acc", "test acc", "params", "time", "tags")
    for run, notes in annotated:
        s = run.status
        style = STATE_STYLE.get(run.state, "")
        table.add_row(escape(run.name), f"[{style}]{run.state}[/]" if style else run.state, run.data, run.model,
                      f"{s.get('epoch', '-')}/{s.get('epochs', '-')}", fmt_pct(s.get("best_val_acc")),
                      fmt_pct(s.get("test_acc")), fmt_count(s.get("params")), fmt_seconds(s.get("wall_s")),
                      escape(" ".join(notes.tags)))
    out_console.print(table)


@app.command()
@reports_errors
def show(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run name, unique prefix, folder, or 'latest'.")],
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """A run's status, config and per-epoch metrics (a k-fold group: its per-fold table and ensemble)."""
    from rich.table import Table

    from engine.checkpoint import list_checkpoints
    from engine.compare import group_match
    from engine.ensemble import list_evals
    from engine.runs import epoch_rows, read_status, resolve_run
    from engine.runs import runs_dir as pick_runs_dir

    group = group_match(pick_runs_dir(runs_dir), run)
    if group is not None:
        from console.cli_eval import show_kfold
        from engine.kfold import read_record

        from engine.annotations import read_annotations

        record = read_record(group)
        notes = read_annotations(group)
        if json_out:
            print_json({**record, "note": notes.note, "tags": notes.tags})
            return
        show_kfold(record)
        print_annotations(notes)
        return
    run_dir = resolve_run(pick_runs_dir(runs_dir), run)
    status = read_status(run_dir)
    rows = epoch_rows(run_dir)
    checkpoints = list_checkpoints(run_dir)
    evals = list_evals(run_dir)
    from engine.annotations import read_annotations

    notes = read_annotations(run_dir)
    if json_out:
        print_json({"run_dir": str(run_dir), "status": status, "epochs": rows,
                    "checkpoints": [{"name": c["name"], "epoch": c.get("epoch")} for c in checkpoints],
                    "evals": evals, "note": notes.note, "tags": notes.tags})
        return
    out_console.print(f"[bold]{run_dir.name}[/]  {status.get('state')}  ({run_dir})", highlight=False)
    out_console.print(f"best {status.get('best_metric')} {_f(status.get('best_value'))} at epoch {status.get('best_epoch')};"
                      f" test acc {fmt_pct(status.get('test_acc'))}; {fmt_count(status.get('params'))} params;"
                      f" {fmt_seconds(status.get('wall_s'))}", highlight=False)
    print_annotations(notes)
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        out_console.rule("config.yaml")
        out_console.print(config_path.read_text(encoding="utf-8"), highlight=False, markup=False)
    table = Table("epoch", "train loss", "train acc", "val loss", "val acc", "lr", "time", title="epochs")
    for row in rows:
        table.add_row(str(row["epoch"]), _f(row.get("train_loss")), fmt_pct(row.get("train_acc")),
                      _f(row.get("val_loss")), fmt_pct(row.get("val_acc")), f"{row.get('lr', 0):.3g}",
                      fmt_seconds(row.get("epoch_s")))
    out_console.print(table)
    if checkpoints:
        out_console.print("checkpoints: " + ", ".join(f"{c['name']} (epoch {c.get('epoch')})" for c in checkpoints),
                          highlight=False)
    if evals:
        show_evals(evals)


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
        table.add_row(str(record.get("checkpoint")), str(record.get("epoch", "-")), str(record.get("split")),
                      str(record.get("tta")), str(record.get("combine")), "yes" if record.get("use_ema") else "no",
                      fmt_pct(record.get("accuracy")), fmt_pct(record.get("top5")), _f(record.get("loss")),
                      str(record.get("count", "-")))
    out_console.print(table)


def _f(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


StateFilter = Annotated[str | None, typer.Option("--state", help="Only runs in this state (finished, failed, ...).")]
DataFilter = Annotated[str | None, typer.Option("--data", help="Only runs on this data source (prefix).")]
ModelFilter = Annotated[str | None, typer.Option("--model", help="Only runs of this model (prefix).")]


@app.command()
@reports_errors
def compare(
    runs: Annotated[list[str] | None, typer.Argument(metavar="RUN", help="Runs or k-fold groups (default: all runs).")] = None,
    sort: Annotated[str | None, typer.Option("--sort", help="Sort by a metric (test_acc, best_val_acc, wall_s, "
                                                            "params, ...) or a differing config key.")] = None,
    descending: Annotated[bool, typer.Option("--desc", help="Sort from largest to smallest.")] = False,
    state: StateFilter = None,
    data: DataFilter = None,
    model: ModelFilter = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """Runs side by side: the config keys that differ between them, and their metrics."""
    from rich.table import Table

    from engine.compare import compare_runs, select_runs
    from engine.runs import runs_dir as pick_runs_dir

    chosen = select_runs(pick_runs_dir(runs_dir), list(runs or []), state=state, data=data, model=model)
    result = compare_runs(chosen, sort=sort, descending=descending)
    if json_out:
        print_json(result)
        return
    if not chosen:
        out_console.print("no runs match", highlight=False)
        return
    from rich.table import Column

    widest = max(len(row["name"]) for row in result["rows"])  # names stay whole: they are what tells runs apart
    table = Table(Column("run", no_wrap=True, min_width=widest), "state", "best val acc", "test acc", "epochs",
                  "params", "time", *result["keys"])
    for row in result["rows"]:
        m = row["metrics"]
        table.add_row(row["name"], m["state"], fmt_pct(m["best_val_acc"]), fmt_pct(m["test_acc"]),
                      str(m.get("epoch", "-")), fmt_count(m["params"]), fmt_seconds(m["wall_s"]),
                      *[_value(row["config"][k]) for k in result["keys"]])
    out_console.print(table)


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
    table = Table("key", path_a.name, path_b.name)
    for row in rows:
        table.add_row(row["key"], _value(row["a"]), _value(row["b"]))
    out_console.print(table)


def _value(value: object) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value, default=str)


RunArgument = Annotated[str, typer.Argument(metavar="RUN", help="Run or k-fold group: name, unique prefix or folder.")]


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
