"""`runs`: list and show run folders."""

from __future__ import annotations

from typing import Annotated

import typer

from console.common import (
    JsonOption, RunsDirOption, fmt_count, fmt_pct, fmt_seconds, out_console, print_json, reports_errors,
)

app = typer.Typer(help="List and inspect runs (one folder per run).", no_args_is_help=True)

STATE_STYLE = {"finished": "green", "running": "cyan", "failed": "red", "diverged": "red", "interrupted": "yellow"}


@app.command("list")
@reports_errors
def list_cmd(
    runs_dir: RunsDirOption = None,
    state: Annotated[str | None, typer.Option("--state", help="Only runs in this state.")] = None,
    json_out: JsonOption = False,
) -> None:
    """Table of runs: name, state, data, model, epochs, best val acc, test acc, params, time."""
    from rich.table import Table

    from engine.runs import list_runs
    from engine.runs import runs_dir as pick_runs_dir

    root = pick_runs_dir(runs_dir)
    runs = [r for r in list_runs(root) if state is None or r.state == state]
    if json_out:
        print_json([{"name": r.name, "path": str(r.path), **r.status} for r in runs])
        return
    if not runs:
        out_console.print(f"no runs in {root}", highlight=False)
        return
    table = Table("name", "state", "data", "model", "epochs", "best val acc", "test acc", "params", "time")
    for run in runs:
        s = run.status
        style = STATE_STYLE.get(run.state, "")
        table.add_row(run.name, f"[{style}]{run.state}[/]" if style else run.state, run.data, run.model,
                      f"{s.get('epoch', '-')}/{s.get('epochs', '-')}", fmt_pct(s.get("best_val_acc")),
                      fmt_pct(s.get("test_acc")), fmt_count(s.get("params")), fmt_seconds(s.get("wall_s")))
    out_console.print(table)


@app.command()
@reports_errors
def show(
    run: Annotated[str, typer.Argument(help="Run name, unique prefix, folder, or 'latest'.")],
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """A run's status, config and per-epoch metrics."""
    from rich.table import Table

    from engine.checkpoint import list_checkpoints
    from engine.runs import epoch_rows, read_status, resolve_run
    from engine.runs import runs_dir as pick_runs_dir

    run_dir = resolve_run(pick_runs_dir(runs_dir), run)
    status = read_status(run_dir)
    rows = epoch_rows(run_dir)
    checkpoints = list_checkpoints(run_dir)
    if json_out:
        print_json({"run_dir": str(run_dir), "status": status, "epochs": rows,
                    "checkpoints": [{"name": c["name"], "epoch": c.get("epoch")} for c in checkpoints]})
        return
    out_console.print(f"[bold]{run_dir.name}[/]  {status.get('state')}  ({run_dir})", highlight=False)
    out_console.print(f"best {status.get('best_metric')} {status.get('best_value')} at epoch {status.get('best_epoch')};"
                      f" test acc {fmt_pct(status.get('test_acc'))}; {fmt_count(status.get('params'))} params;"
                      f" {fmt_seconds(status.get('wall_s'))}", highlight=False)
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


def _f(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
