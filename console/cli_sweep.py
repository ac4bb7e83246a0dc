"""`sweep`: search an experiment's settings with Optuna, each trial an ordinary run folder (engine.sweep)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from console.common import (
    JsonOption, OverrideOption, RunsDirOption, err_console, escape, fmt_pct, out_console, print_json, reports_errors,
    slurm_minutes,
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
WorkersOption = Annotated[int | None, typer.Option(
    "--workers", "-w", min=1, show_default=False,
    help="Worker processes pulling trials from the study at once (default: one per --gpus entry, else 1); on a "
         "CPU the cores are shared out among them.")]
GpusOption = Annotated[str | None, typer.Option(
    "--gpus", metavar="LIST", show_default=False,
    help="GPUs for the workers, e.g. 0,1: worker i gets GPU i mod their number (more workers than GPUs: several "
         "trials per GPU).")]
TimeOption = Annotated[str | None, typer.Option(
    "--time", metavar="DURATION", show_default=False,
    help="Time budget of this invocation (600, 90s, 45m, 2h, 1h30m): no trial starts after it; the running ones "
         "finish (default: the spec's `time`, else none).")]
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


def compact_params(params: dict[str, Any]) -> str:
    """A trial's values on one line, floats to 4 significant digits (lr=0.01944, not 0.0194455295437263)."""
    return ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in params.items())


def _trial_line(spec: Any, quiet: bool) -> Any:
    """The `on_trial` callback: one line when a trial ends (state, metric, params)."""

    def report(trial: Any) -> None:
        if quiet:
            return
        from engine.sweep import shown_value

        value = shown_value(trial)
        params = escape(compact_params(trial.params))
        if trial.user_attrs.get("interrupted"):
            err_console.print(f"trial {trial.number} stopped ({params}): not counted; its values run again first "
                              "when the sweep resumes", highlight=False)
            return
        err_console.print(f"trial {trial.number} {trial.state.name.lower()}: {spec.metric} "
                          f"{_value(spec.metric, value)} ({params})", highlight=False)

    return report


def _time_limit(text: str | None) -> float | None:
    """--time as seconds (None when not given); a bad value is a one-line error."""
    from engine.errors import ConfigError
    from engine.sweep import parse_duration

    if text is None:
        return None
    seconds = parse_duration(text)
    if seconds is None:
        raise ConfigError(f"--time {text}: expected a positive time such as 600 (seconds), 90s, 45m, 2h or 1h30m")
    return seconds


@dataclass
class Invocation:
    """How this `run`/`resume` drives the sweep: the budget, the workers, the output."""

    trials: int | None = None
    time_limit: float | None = None
    workers: int | None = None
    gpus: str | None = None
    quiet: bool = False
    json_out: bool = False


def _drive(study: Any, spec: Any, overrides: list[str], root: Path, url: str, how: Invocation) -> None:
    """Run the sweep's trials here, or in worker processes (--workers/--gpus), with Ctrl-C handling (each
    trial's run is saved, the sweep stops); then print the results."""
    from engine.stop import StopRequest, install_stop_handlers, restore_stop_handlers
    from engine.sweep import summary
    from engine.sweep_trials import run_sweep, target_trials

    quiet = how.quiet or how.json_out
    stop = StopRequest()
    if how.workers is None and how.gpus is None:
        install_stop_handlers(stop)
        try:
            result = run_sweep(study, spec, overrides, root, trials=how.trials, time_limit=how.time_limit, stop=stop,
                               listeners=lambda trial: [EpochLines(trial.number, spec.metric, quiet)],
                               on_trial=_trial_line(spec, quiet))
        finally:
            restore_stop_handlers(stop)
    else:
        target_trials(study, spec, how.trials)  # kept in the study: every worker reads the same budget
        _run_workers(spec, overrides, root, url, how, stop)
        result = summary(study, spec)
    if how.json_out:
        print_json(result)
    else:
        _print_table(result)
    if stop.requested:
        err_console.print(f"sweep stopped; `imgcls-console sweep resume {spec.name}` continues it", highlight=False)
        raise typer.Exit(stop.exit_code)


def _run_workers(spec: Any, overrides: list[str], root: Path, url: str, how: Invocation, stop: Any) -> None:
    """Start the worker processes and wait for them, passing a stop signal on to them."""
    import signal

    from engine.errors import RunError
    from engine.sweep_workers import forward_signal, plan_workers, start_workers, wait_workers

    gpus = how.gpus.split(",") if how.gpus else None
    slots = plan_workers(how.workers, gpus)
    if not how.quiet and not how.json_out:
        threads = slots[0].cpu_threads
        where = ", ".join(f"GPU {s.gpu}" for s in slots) if gpus else \
            f"CPU, {threads or 'all'} thread{'' if threads == 1 else 's'} each"
        err_console.print(f"{len(slots)} workers on sweep {spec.name} ({where})", highlight=False)
    processes = start_workers(spec.name, url, root, slots, overrides, time_limit=how.time_limit,
                              quiet=how.quiet or how.json_out)

    def handler(signum: int, frame: Any) -> None:
        stop.count += 1
        stop.signal_number = stop.signal_number or signum
        forward_signal(processes, signum)  # the first: workers save and stop; a second: they stop at once

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = wait_workers(processes)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    failed = [f"worker {i} exited with {code}" for i, code in enumerate(codes) if code not in (0, 130, 143)]
    if failed and not stop.requested:
        raise RunError(f"sweep {spec.name}: {'; '.join(failed)} (its error is above); "
                       f"`imgcls-console sweep resume {spec.name}` continues the sweep")


@app.command("run")
@reports_errors
def run_cmd(
    spec_name: Annotated[str, typer.Argument(metavar="SPEC", help="Sweep preset name or YAML file.")],
    overrides: OverrideOption = None,
    trials: TrialsOption = None,
    time: TimeOption = None,
    workers: WorkersOption = None,
    gpus: GpusOption = None,
    storage: StorageOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Start a sweep: every trial trains its base experiment with sampled values into a run folder, tagged
    sweep-NAME and trial-N; poor trials are pruned from their per-epoch metric. --set applies to every trial."""
    from engine.runs import runs_dir as pick_runs_dir
    from engine.sweep import check_trials, create_study, load_spec, open_storage, storage_url
    from engine.sweep_workers import plan_workers

    how = Invocation(trials, _time_limit(time), workers, gpus, quiet, json_out)
    spec = load_spec(spec_name, overrides or [])
    if trials is not None:
        check_trials(spec, trials)  # before the study exists: a refused start leaves nothing behind
    plan_workers(workers, gpus.split(",") if gpus else None)
    root = pick_runs_dir(runs_dir)
    url = storage_url(root, spec.name, storage)
    study = create_study(spec, open_storage(url), overrides or [])
    _drive(study, spec, overrides or [], root, url, how)


@app.command("resume")
@reports_errors
def resume_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The sweep's name (its spec file's name).")],
    trials: TrialsOption = None,
    time: TimeOption = None,
    workers: WorkersOption = None,
    gpus: GpusOption = None,
    storage: StorageOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Continue a sweep until it has its trials (trials of a killed process are run again), here or in several
    workers; other workers (another machine, Slurm jobs) may pull trials from the same study meanwhile. The
    sweep's own --set values (given to `sweep run`) are kept; --trials N raises its budget."""
    from engine.runs import runs_dir as pick_runs_dir
    from engine.sweep import done_trials, open_named, storage_url

    how = Invocation(trials, _time_limit(time), workers, gpus, quiet, json_out)
    root = pick_runs_dir(runs_dir)
    study, spec, overrides = open_named(root, name, storage)
    planned = trials or study.user_attrs.get("trials") or spec.trials
    if done_trials(study) >= planned and not (quiet or json_out):
        err_console.print(f"sweep {escape(spec.name)} already has its {planned} trials: nothing to run "
                          "(--trials N to add more)", highlight=False)
    _drive(study, spec, overrides, root, storage_url(root, name, storage), how)


@app.command("worker", hidden=True)
@reports_errors
def worker_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME")],
    overrides: OverrideOption = None,
    time: TimeOption = None,
    storage: StorageOption = None,
    runs_dir: RunsDirOption = None,
    quiet: QuietOption = False,
) -> None:
    """One worker of `run`/`resume --workers`: pull trials from the study until its budget is spent (--set adds
    this worker's own overrides, such as its CPU thread share)."""
    from engine.runs import runs_dir as pick_runs_dir
    from engine.stop import StopRequest, install_stop_handlers, restore_stop_handlers
    from engine.sweep import open_named
    from engine.sweep_trials import run_sweep

    root = pick_runs_dir(runs_dir)
    study, spec, stored = open_named(root, name, storage)
    stop = StopRequest()
    install_stop_handlers(stop)
    try:
        run_sweep(study, spec, [*stored, *(overrides or [])], root, time_limit=_time_limit(time), stop=stop,
                  listeners=lambda trial: [EpochLines(trial.number, spec.metric, quiet)],
                  on_trial=_trial_line(spec, quiet))
    finally:
        restore_stop_handlers(stop)
    if stop.requested:
        raise typer.Exit(stop.exit_code)


@app.command("submit")
@reports_errors
def submit_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME|SPEC",
                                        help="A sweep to continue, or a sweep spec to start (like `run`).")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker jobs (a Slurm job array of that many).")] = 1,
    partition: Annotated[str | None, typer.Option("--partition", "-p", show_default=False,
                                                  help="Slurm partition.")] = None,
    gpus_per_job: Annotated[int, typer.Option("--gpus-per-job", min=0, help="GPUs each job asks for.")] = 1,
    time_limit: Annotated[str, typer.Option("--time-limit", metavar="DURATION",
                                            help="Each job's Slurm time limit (90m, 4h, ...).")] = "4h",
    parallel: Annotated[int | None, typer.Option("--parallel", min=1, show_default=False,
                                                 help="Jobs of the array running at once (default: all).")] = None,
    cluster: Annotated[str, typer.Option("--cluster", help="slurm, or local: the same jobs as local processes "
                                                           "(to try a submission on one machine).")] = "slurm",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the jobs and print the results.")] = True,
    overrides: OverrideOption = None,
    trials: TrialsOption = None,
    storage: StorageOption = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Submit workers of a sweep to Slurm through submitit: each job pulls trials from the same study until its
    budget is spent, so a sweep started here continues on a cluster. The study must be reachable from the nodes
    (the runs folder on a shared file system, or --storage postgresql://... / journal:FILE)."""
    from engine.runs import runs_dir as pick_runs_dir
    from engine.sweep import storage_url, summary
    from engine.sweep_trials import target_trials
    from engine.sweep_workers import SlurmOptions, submit_slurm

    minutes = slurm_minutes(time_limit, cluster, wait)
    root = pick_runs_dir(runs_dir)
    study, spec = _existing_or_new(name, root, storage, overrides or [])
    target_trials(study, spec, trials)
    options = SlurmOptions(jobs, partition, gpus_per_job, minutes, parallel, cluster)
    submitted, folder = submit_slurm(spec.name, storage_url(root, spec.name, storage), root, options)
    err_console.print(f"submitted {len(submitted)} job{'s' if len(submitted) != 1 else ''} "
                      f"({', '.join(str(job.job_id) for job in submitted)}); their logs: {folder}", highlight=False)
    if wait:
        _wait_for_jobs(submitted, study, spec)
        submitted.clear()  # submitit's jobs are let go here, not at interpreter shutdown (their __del__ then fails)
        _print_table(summary(study, spec))


def _wait_for_jobs(jobs: list[Any], study: Any, spec: Any) -> None:
    """Wait for the submitted jobs, printing a line as each trial of the study ends (a job's failure: one line)."""
    import time

    seen = {t.number for t in study.trials if t.state.is_finished()}
    report = _trial_line(spec, quiet=False)
    while True:
        for trial in study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in seen:
                seen.add(trial.number)
                report(trial)
        if all(job.done() for job in jobs):
            break
        time.sleep(1.0)  # polling the study and the queue, as `squeue` would
    for job in jobs:
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - submitit raises the job's failure with its log: one line of it
            err_console.print(f"[yellow]warning:[/] job {job.job_id} failed: "
                              f"{escape(' '.join(str(exc).split())[:300])}", highlight=False)


def _existing_or_new(name: str, root: Path, storage: str | None, overrides: list[str]) -> tuple[Any, Any]:
    """The sweep `name` when its study exists (continued), else a new one from the spec `name` (started)."""
    from engine.errors import RunError
    from engine.sweep import create_study, load_spec, open_named, open_storage, storage_url

    if not name.endswith((".yaml", ".yml")) and "/" not in name:
        try:
            study, spec, _ = open_named(root, name, storage)
            return study, spec
        except RunError:  # no study of that name: a spec to start
            pass
    spec = load_spec(name, overrides)
    return create_study(spec, open_storage(storage_url(root, spec.name, storage)), overrides), spec


@app.command("list")
@reports_errors
def list_cmd(storage: StorageOption = None, runs_dir: RunsDirOption = None, json_out: JsonOption = False) -> None:
    """The sweeps in the runs folder (or in --storage): trials done of planned, best value."""
    from engine.runs import runs_dir as pick_runs_dir
    from engine.errors import EngineError
    from engine.sweep import known_sweeps, open_named, open_storage

    root = pick_runs_dir(runs_dir)
    if storage is None:
        names = known_sweeps(root)
    else:
        import optuna

        names = sorted(s.study_name for s in optuna.get_all_study_summaries(open_storage(storage)))
    rows = []
    for name in names:
        try:
            result = _summary(*open_named(root, name, storage, to_run=False)[:2])
        except EngineError as exc:  # one unreadable sweep is said in its row; the others are still listed
            rows.append({"sweep": name, "error": str(exc)})
            continue
        rows.append({key: result[key] for key in ("sweep", "base", "metric", "sampler", "done", "trials",
                                                  "best_trial", "best_value")})
    if json_out:
        print_json(rows)
        return
    if not rows:
        err_console.print(f"no sweeps in {root / 'sweeps'}", highlight=False)
        return
    for row in rows:
        if "error" in row:
            out_console.print(f"{row['sweep']}  cannot be read: {row['error']}", highlight=False)
            continue
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

    result = _summary(*open_named(pick_runs_dir(runs_dir), name, storage, to_run=False)[:2])
    if json_out:
        print_json(result)
    else:
        _print_table(result)


@app.command("report")
@reports_errors
def report_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The sweep's name.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.md and figures/.")],
    storage: StorageOption = None,
    runs_dir: RunsDirOption = None,
    json_out: JsonOption = False,
) -> None:
    """Write a Markdown report of a sweep: ranked trials, parameter importances, a figure of each parameter against
    the metric (and the best so far), the best trial's curves and environment."""
    from engine.report import linked_figures
    from engine.runs import runs_dir as pick_runs_dir
    from engine.sweep import open_named
    from engine.sweep_report import write_sweep_report

    study, spec, _ = open_named(pick_runs_dir(runs_dir), name, storage, to_run=False)
    path = write_sweep_report(study, spec, out)
    figures = [str(p) for p in linked_figures(path)]
    if json_out:
        print_json({"report": str(path), "sweep": spec.name, "figures": figures})
        return
    out_console.print(f"report of sweep {escape(spec.name)}: {escape(str(path))} ({len(figures)} "
                      f"figure{'s' if len(figures) != 1 else ''})", highlight=False)


def _print_table(result: dict[str, Any]) -> None:
    """The ranked trials as a table on stdout, the best starred."""
    from rich.table import Table
    from rich.text import Text

    metric = result["metric"]
    table = Table(title=f"sweep {result['sweep']}: {result['done']}/{result['trials']} trials, {metric} "
                        f"({result['direction']}), {result['sampler']} sampler, {result['pruner']} pruner")
    for column in ("#", "trial", "state", metric, "epochs", "params", "run"):
        table.add_column(column)
    for row in result["ranked"]:
        params = compact_params(row["params"])
        table.add_row(f"{row['rank']}{' *' if row['best'] else ''}", str(row["trial"]),
                      Text(row["state"], style=STATE_STYLE.get(row["state"], "")),
                      _value(metric, row[metric]), str(row["epochs"]), escape(params),
                      escape(Path(row["run_dir"]).name if row["run_dir"] else "-"))
    out_console.print(table)
    if result.get("importances"):
        shares = ", ".join(f"{key} {share:.0%}" for key, share in result["importances"].items())
        out_console.print(f"parameter importances (fANOVA over the complete trials): {escape(shares)}",
                          highlight=False)
    elif sum(row["state"] == "complete" for row in result["ranked"]) >= 3:
        out_console.print("parameter importances: none to tell (no parameter varied among the complete trials, or "
                          "their values do not differ)", highlight=False)
