"""`sweep`: search an experiment's settings with Optuna, each trial an ordinary run folder (engine.sweep)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from console.common import (
    JsonOption, OverrideOption, RunsDirOption, err_console, escape, fmt_pct, out_console, print_json, reports_errors,
)

app = typer.Typer(help="Sweeps: search an experiment's settings (Optuna), each trial a run folder.",
                  no_args_is_help=True)

StorageOption = Annotated[str | None, typer.Option(
    "--storage", metavar="URL", show_default=False,
    help="Study storage: any database URL Optuna accepts (sqlite:///f.db, postgresql://...), or journal:FILE "
         "(default: SQLite at <runs>/sweeps/<name>.db).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")]
TrialsOption = Annotated[int | None, typer.Option(
    "--trials", min=1, show_default=False, help="Trials in all (default: the spec's `trials`, or the grid's size).")]
STATE_STYLE = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan"}


class EpochLines:
    """A run listener printing one line per epoch of a trial (the sweep's progress on stderr)."""

    def __init__(self, trial: int, metric: str, quiet: bool) -> None:
        self.trial, self.metric, self.quiet = trial, metric, quiet

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        if event.get("type") == "run_start":
            err_console.print(f"trial {self.trial}: run {escape(str(event['name']))}", highlight=False)
        elif event.get("type") == "epoch":
            err_console.print(f"  trial {self.trial} epoch {event['epoch']}: {self.metric} "
                              f"{_value(self.metric, event.get(self.metric))}", highlight=False)


def _value(metric: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return fmt_pct(value) if metric.endswith("acc") else f"{value:.4f}"


def _trial_line(spec: Any, quiet: bool) -> Any:
    """The `on_trial` callback: one line when a trial ends (state, metric, params)."""

    def report(trial: Any) -> None:
        if quiet:
            return
        value = trial.value if trial.state.name == "COMPLETE" else None
        params = ", ".join(f"{k}={v}" for k, v in trial.params.items())
        err_console.print(f"trial {trial.number} {trial.state.name.lower()}: {spec.metric} "
                          f"{_value(spec.metric, value)} ({escape(params)})", highlight=False)

    return report


def _drive(study: Any, spec: Any, overrides: list[str], runs_dir: Any, trials: int | None, quiet: bool,
           json_out: bool) -> None:
    """Run the sweep's trials with Ctrl-C handling (the trial's run is saved, the sweep stops); print results."""
    from engine.runs import runs_dir as pick_runs_dir
    from engine.runtime import StopRequest, install_stop_handlers, restore_stop_handlers
    from engine.sweep import run_sweep

    stop = StopRequest()
    install_stop_handlers(stop)
    try:
        result = run_sweep(study, spec, overrides, pick_runs_dir(runs_dir), trials=trials, stop=stop,
                           listeners=lambda trial: [EpochLines(trial.number, spec.metric, quiet or json_out)],
                           on_trial=_trial_line(spec, quiet or json_out))
    finally:
        restore_stop_handlers(stop)
    if json_out:
        print_json(result)
    else:
        _print_table(result)
    if stop.requested:
        err_console.print(f"sweep stopped; `imgcls-console sweep resume {spec.name}` continues it", highlight=False)
        raise typer.Exit(stop.exit_code)


@app.command("run")
@reports_errors
def run_cmd(
    spec_name: Annotated[str, typer.Argument(metavar="SPEC", help="Sweep preset name or YAML file.")],
    overrides: OverrideOption = None,
    trials: TrialsOption = None,
    storage: StorageOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Start a sweep: every trial trains its base experiment with sampled values into a run folder, tagged
    sweep-NAME and trial-N; poor trials are pruned from their per-epoch metric. --set applies to every trial."""
    from engine.runs import runs_dir as pick_runs_dir
    from engine.sweep import check_trials, create_study, load_spec, open_storage, storage_url

    spec = load_spec(spec_name, overrides or [])
    if trials is not None:
        check_trials(spec, trials)  # before the study exists: a refused start leaves nothing behind
    study = create_study(spec, open_storage(storage_url(pick_runs_dir(runs_dir), spec.name, storage)), overrides or [])
    _drive(study, spec, overrides or [], runs_dir, trials, quiet, json_out)


@app.command("resume")
@reports_errors
def resume_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The sweep's name (its spec file's name).")],
    trials: TrialsOption = None,
    storage: StorageOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Continue a sweep until it has its trials (trials of a killed process are run again)."""
    from engine.runs import runs_dir as pick_runs_dir
    from engine.sweep import open_named

    study, spec, overrides = open_named(pick_runs_dir(runs_dir), name, storage)
    _drive(study, spec, overrides, runs_dir, trials, quiet, json_out)


@app.command("list")
@reports_errors
def list_cmd(storage: StorageOption = None, runs_dir: RunsDirOption = None, json_out: JsonOption = False) -> None:
    """The sweeps in the runs folder (or in --storage): trials done of planned, best value."""
    from engine.runs import runs_dir as pick_runs_dir
    from engine.sweep import known_sweeps, open_named, open_storage

    root = pick_runs_dir(runs_dir)
    if storage is None:
        names = known_sweeps(root)
    else:
        import optuna

        names = sorted(s.study_name for s in optuna.get_all_study_summaries(open_storage(storage)))
    rows = []
    for name in names:
        result = _summary(*open_named(root, name, storage)[:2])
        rows.append({key: result[key] for key in ("sweep", "base", "metric", "sampler", "done", "trials",
                                                  "best_trial", "best_value")})
    if json_out:
        print_json(rows)
        return
    if not rows:
        err_console.print(f"no sweeps in {root / 'sweeps'}", highlight=False)
        return
    for row in rows:
        best = "-" if row["best_trial"] is None else f"trial {row['best_trial']} {_value(row['metric'], row['best_value'])}"
        out_console.print(f"{row['sweep']}  {row['base']}  {row['sampler']}  {row['done']}/{row['trials']} trials  "
                          f"best {row['metric']}: {best}", highlight=False)


def _summary(study: Any, spec: Any) -> dict[str, Any]:
    from engine.sweep import summary

    return summary(study, spec)


@app.command("show")
@reports_errors
def show_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The sweep's name.")],
    storage: StorageOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """The sweep's trials ranked by their metric, with their parameters and run folders; the best is marked."""
    from engine.runs import runs_dir as pick_runs_dir
    from engine.sweep import open_named

    result = _summary(*open_named(pick_runs_dir(runs_dir), name, storage)[:2])
    if json_out:
        print_json(result)
    else:
        _print_table(result)


def _print_table(result: dict[str, Any]) -> None:
    """The ranked trials as a table on stdout, the best starred."""
    from pathlib import Path

    from rich.table import Table

    metric = result["metric"]
    table = Table(title=f"sweep {result['sweep']}: {result['done']}/{result['trials']} trials, {metric} "
                        f"({result['direction']}), {result['sampler']} sampler, {result['pruner']} pruner")
    for column in ("#", "trial", "state", metric, "epochs", "params", "run"):
        table.add_column(column)
    for row in result["ranked"]:
        style = STATE_STYLE.get(row["state"], "")
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        table.add_row(f"{row['rank']}{' *' if row['best'] else ''}", str(row["trial"]), f"[{style}]{row['state']}[/]",
                      _value(metric, row[metric]), str(row["epochs"]), escape(params),
                      escape(Path(row["run_dir"]).name if row["run_dir"] else "-"))
    out_console.print(table)
