"""`schedule preview` and `lr-find`: look at learning rates before spending GPU time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.common import JsonOption, OverrideOption, err_console, out_console, print_json, reports_errors

app = typer.Typer(help="Preview an experiment's LR schedule without training.", no_args_is_help=True)


@app.callback()
def schedule_group() -> None:
    """Preview an experiment's LR schedule without training."""


@app.command()
@reports_errors
def preview(
    experiment: Annotated[str, typer.Argument(metavar="EXPERIMENT", help="Experiment preset name or YAML file.")],
    overrides: OverrideOption = None,
    steps_per_epoch: Annotated[int | None, typer.Option(help="Optimizer steps per epoch (default: from the data).")] = None,
    json_out: JsonOption = False,
) -> None:
    """Print the LR of every epoch (and a text chart) as the run would see it."""
    from engine.lr_find import plain_chart
    from engine.presets import resolve_experiment
    from engine.preview import schedule_preview, steps_per_epoch_from_data

    config = resolve_experiment(experiment, overrides or [])
    steps = steps_per_epoch if steps_per_epoch is not None else steps_per_epoch_from_data(config)
    preview = schedule_preview(config, steps)
    series, drops = preview.series, preview.drops
    if json_out:
        print_json({"experiment": config.name, "steps_per_epoch": steps, "series": series, "drops": drops,
                    "note": preview.note, "warning": preview.warning})
        return
    out_console.print(f"{config.name}: {config.schedule.name} schedule, {config.train.epochs} epochs x {steps} steps,"
                      f" peak lr {config.optim.lr:g}", highlight=False)
    for line in plain_chart([x for x, _ in series], [y for _, y in series]):
        out_console.print("  |" + line, highlight=False)
    for epoch, lr in enumerate(preview.epoch_lrs):
        out_console.print(f"  epoch {epoch + 1:>4}  lr {lr:.6g}", highlight=False)
    if drops:
        out_console.print("  lr drops at the start of epochs: " + ", ".join(f"{d + 1:g}" for d in drops),
                          highlight=False)
    if preview.note:
        err_console.print(f"note: {preview.note}", highlight=False)
    if preview.warning:
        err_console.print(f"[yellow]warning:[/] {preview.warning}", highlight=False, soft_wrap=True)


@reports_errors
def lr_find(
    experiment: Annotated[str, typer.Argument(metavar="EXPERIMENT", help="Experiment preset name or YAML file.")],
    overrides: OverrideOption = None,
    start_lr: Annotated[float, typer.Option(help="First LR of the ramp.")] = 1e-6,
    end_lr: Annotated[float, typer.Option(help="Last LR of the ramp.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Optimizer steps of the ramp.")] = 200,
    out: Annotated[Path | None, typer.Option(help="Where to save the series (JSON).")] = None,
    json_out: JsonOption = False,
) -> None:
    """LR range test: ramp the LR up exponentially, record the loss, suggest an LR (steepest descent)."""
    import time

    from engine.lr_find import lr_range_test, plain_chart, save_series
    from engine.presets import resolve_experiment
    from engine.runs import runs_dir

    config = resolve_experiment(experiment, overrides or [])
    err_console.print(f"lr-find on {config.name}: {steps} steps from {start_lr:g} to {end_lr:g}", highlight=False)
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("lr-find", total=steps)
        result = lr_range_test(config, start_lr=start_lr, end_lr=end_lr, steps=steps,
                               progress=lambda done, total, lr: bar.update(task, completed=done,
                                                                           description=f"lr-find lr {lr:.2g}"))
    target = out or runs_dir() / "lr-find" / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    save_series(result, target)
    if json_out:
        print_json({"suggested_lr": result["suggested_lr"], "series_file": str(target),
                    "steps": len(result["series"])})
        return
    series = result["series"]
    for line in plain_chart([p["lr"] for p in series], [p["smoothed"] for p in series], log_x=True):
        out_console.print("  |" + line, highlight=False)
    out_console.print(f"  lr {series[0]['lr']:.2g} ... {series[-1]['lr']:.2g} (log scale), smoothed loss",
                      highlight=False)
    if len(series) < steps:
        out_console.print(f"  stopped after {len(series)} of {steps} steps: the loss blew up at lr "
                          f"{series[-1]['lr']:.2g}", highlight=False)
    suggestion = result["suggested_lr"]
    out_console.print(f"suggested lr: {suggestion:.3g}" if suggestion else "no suggestion (too few steps)",
                      highlight=False)
    err_console.print(f"series saved to {target}", highlight=False)
