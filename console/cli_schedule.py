"""`schedule preview` and `lr-find`: look at learning rates before spending GPU time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from console.common import (
    JsonOption, OverrideOption, RunsDirOption, err_console, out_console, print_json, reports_errors,
)

if TYPE_CHECKING:
    from engine.config import ExperimentConfig
    from engine.preview import SchedulePreview

app = typer.Typer(help="Preview the LR schedule of an experiment or a run without training.", no_args_is_help=True)

ExtendScheduleOption = Annotated[str | None, typer.Option(
    "--extend-schedule", metavar="SHAPE",
    help="How the LR goes on past the epochs the schedule was planned over, when train.epochs grows (finished "
         "epochs never change): constant (the default) holds the LR reached; cosine or polynomial decay from it to "
         "0 over the added epochs; continue carries the schedule's own formula on (a cosine rises again); or a "
         "schedule preset without warmup, e.g. exponential-0.7, step-30 or multistep-10 (its epochs counted from "
         "the extension's start).", show_default=False)]


@app.callback()
def schedule_group() -> None:
    """Preview the LR schedule of an experiment or a run without training."""


@app.command()
@reports_errors
def preview(
    experiment: Annotated[str, typer.Argument(
        metavar="EXPERIMENT|RUN", help="Experiment preset name or YAML file, or a run: its schedule as recorded, "
                                       "extensions included (an experiment preset of the name wins).")],
    overrides: OverrideOption = None,
    steps_per_epoch: Annotated[int | None, typer.Option(
        help="Optimizer steps per epoch (default: a run's own, else from the data).")] = None,
    epochs: Annotated[int | None, typer.Option(
        "--epochs", metavar="N", min=1, help="Preview N epochs as `resume RUN --set train.epochs=N` would train "
                                             "them: planned epochs keep their LR, the rest follow --extend-schedule.")
    ] = None,
    extend_schedule: ExtendScheduleOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """Print the LR of every epoch (and a text chart) as the run would see it."""
    from engine.schedule_extension import with_epochs
    from engine.preview import preview_target, run_steps_per_epoch, schedule_preview, steps_per_epoch_from_data
    from engine.runs import runs_dir as pick_runs_dir

    config, run_dir = preview_target(experiment, overrides or [], pick_runs_dir(runs_dir))
    if epochs is not None or extend_schedule:
        config = with_epochs(config, epochs if epochs is not None else config.train.epochs, extend_schedule)
    steps = steps_per_epoch or (run_steps_per_epoch(run_dir, config) if run_dir else None)
    steps = steps or steps_per_epoch_from_data(config)
    preview = schedule_preview(config, steps)
    if json_out:
        print_json({"experiment": config.name, "run": run_dir.name if run_dir else None, "epochs": config.train.epochs,
                    "steps_per_epoch": steps, "series": preview.series, "drops": preview.drops,
                    "plan": preview.plan, "pieces": preview.pieces, "note": preview.note, "warning": preview.warning})
        return
    _show_preview(config, preview, run_dir.name if run_dir else config.name)


def _show_preview(config: ExperimentConfig, preview: SchedulePreview, title: str) -> None:
    """The preview as text: a header, a chart, the LR of each epoch (extension segments marked), the drops."""
    from engine.lr_find import plain_chart

    series, drops, steps = preview.series, preview.drops, preview.steps_per_epoch
    out_console.print(f"{title}: {config.schedule.name} schedule, {config.train.epochs} epochs x {steps} steps,"
                      f" peak lr {config.optim.lr:g}", highlight=False)
    if preview.plan:
        out_console.print(f"  {preview.plan}", highlight=False)
    for line in plain_chart([x for x, _ in series], [y for _, y in series]):
        out_console.print("  |" + line, highlight=False)
    starts = dict(preview.pieces[1:])  # first epoch of each extension segment -> its shape
    for epoch, lr in enumerate(preview.epoch_lrs):
        mark = f"  <- extension: {starts[epoch]}" if epoch in starts else ""
        out_console.print(f"  epoch {epoch + 1:>4}  lr {lr:.6g}{mark}", highlight=False)
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

    from engine.lr_find import check_ramp, lr_range_test, plain_chart, save_series
    from engine.presets import resolve_experiment
    from engine.runs import ensure_folder, runs_dir

    check_ramp(start_lr, end_lr, steps)
    config = resolve_experiment(experiment, overrides or [])
    target = out or runs_dir() / "lr-find" / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    ensure_folder(target.parent, "--out folder" if out else "runs folder",  # before the ramp, not after it
                  "pass another --out" if out else "pass another --runs-dir or --out")
    err_console.print(f"lr-find on {config.name}: {steps} steps from {start_lr:g} to {end_lr:g}", highlight=False)
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("lr-find", total=steps)
        result = lr_range_test(config, start_lr=start_lr, end_lr=end_lr, steps=steps,
                               progress=lambda done, total, lr: bar.update(task, completed=done,
                                                                           description=f"lr-find lr {lr:.2g}"))
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
