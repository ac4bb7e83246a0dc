"""The `imgcls-console` command: with no arguments the Textual console, else one Typer sub-command per action
(one sub-app per file); heavy imports happen inside commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from console import (
    cli_data, cli_eval, cli_presets, cli_runs, cli_schedule, cli_serve, cli_submit, cli_sweep, cli_train,
)
from console.common import CommandGroup, install_warning_handler

install_warning_handler()

app = typer.Typer(
    name="imgcls-console",
    help="Image-classification experiments: presets, fast training, run folders, evaluation. With no command, "
         "opens the terminal console (Textual) over the same run folders.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    cls=CommandGroup,  # several KEY=VALUE after one --set
)


@app.callback()
def console_app(
    ctx: typer.Context,
    runs_dir: Annotated[Path | None, typer.Option("--runs-dir", metavar="DIR", show_default=False,
                                                  help="Runs folder (default: $IMGCLS_RUNS_DIR or ./runs).")] = None,
    experiment: Annotated[str, typer.Option("--experiment", "-e", metavar="EXPERIMENT",
                                            help="Experiment composed in Launch when the console opens.")] = "quickstart",
    version: Annotated[bool, typer.Option("--version", is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """With no command: open the console (Launch, Monitor, Runs, Evaluate, Presets; F1 for help)."""
    if version:
        from importlib.metadata import version as installed_version

        typer.echo(f"imgcls-console {installed_version('imgcls-console')}")
        raise typer.Exit()
    if ctx.invoked_subcommand is not None:
        return
    from console.app import create_app

    console = create_app(runs_dir, experiment)
    console.run()
    say_still_training(console.runs_root)
    end_at_once(console.return_code or 0)


def say_still_training(runs_root: Path) -> None:
    """After the app closes: the runs that go on training (closing never stops them), so a quiet shell prompt
    does not read as their end."""
    from engine.runs import RunningRuns

    try:
        running = RunningRuns(Path(runs_root)).scan()
    except OSError:
        return
    if running:
        names = ", ".join(run.name for run in running[:3]) + (" …" if len(running) > 3 else "")
        typer.echo(f"{len(running)} still training ({names}): `imgcls-console` shows "
                   f"{'it' if len(running) == 1 else 'them'} again")


def end_at_once(code: int) -> None:
    """Exit without the interpreter's finalization when nothing is left running: tearing down torch's modules
    takes seconds (2.5 s of a 2.9 s quit, measured), and the console has nothing to save (runs are processes of
    their own; every file it writes is complete before its worker ends)."""
    import threading

    from engine.processes import exit_now

    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return  # a worker still writing: let the interpreter wait for it
    exit_now(code)


app.command()(cli_train.train)
app.command()(cli_train.resume)
app.command()(cli_train.finetune)
app.command()(cli_submit.submit)
app.command("lr-find")(cli_schedule.lr_find)
app.add_typer(cli_presets.app, name="presets")
app.add_typer(cli_runs.app, name="runs")
app.add_typer(cli_data.app, name="data")
app.add_typer(cli_schedule.app, name="schedule")
app.add_typer(cli_sweep.app, name="sweep")
app.command("eval")(cli_eval.eval_cmd)
app.command()(cli_eval.ensemble)
app.command()(cli_eval.predict)
app.command()(cli_eval.kfold)
app.command()(cli_eval.report)
app.command()(cli_serve.serve)


def reflow_docstrings(typer_app: typer.Typer) -> None:
    """Each command's docstring as paragraphs (Typer keeps a docstring's line breaks in --help, so sentences broke
    where the source wrapped them: "and a k-fold group / name each fold run"); lines that start a list item stay
    lines."""
    import inspect

    def reflow(doc: str) -> str:
        paragraphs = []
        for paragraph in inspect.cleandoc(doc).split("\n\n"):
            lines: list[str] = []
            for line in paragraph.splitlines():
                if lines and not line.lstrip().startswith(("- ", "* ")):
                    lines[-1] += " " + line.strip()
                else:
                    lines.append(line.rstrip())
            paragraphs.append("\n".join(lines))
        return "\n\n".join(paragraphs)

    for command in typer_app.registered_commands:
        if command.callback is not None and command.callback.__doc__:
            command.callback.__doc__ = reflow(command.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            reflow_docstrings(group.typer_instance)


reflow_docstrings(app)


def main() -> None:
    """The `imgcls-console` program: the CLI, then a quiet exit. Once a command is over (a stopped run is saved
    and recorded), a Ctrl-C during the interpreter's shutdown quits at once instead of printing an atexit
    KeyboardInterrupt traceback."""
    try:
        app()
    except SystemExit as done:
        # A rank under torchrun, its run recorded and its process group left, ends without the interpreter's
        # teardown: gloo's threads destroyed there aborted a finished rank ("terminate called without an active
        # exception", SIGABRT), and torchrun then failed the whole job.
        if "TORCHELASTIC_RUN_ID" in os.environ and isinstance(done.code, (int, type(None))):
            end_at_once(done.code or 0)
        raise
    finally:
        exit_quietly_on_interrupt()


def exit_quietly_on_interrupt() -> None:
    """From now on SIGINT/SIGTERM end the process at once with 128+signal, after flushing what was printed."""
    import signal
    import sys

    def handler(signum: int, frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


if __name__ == "__main__":
    main()
