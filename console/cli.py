"""The `imgcls-console` command: one Typer app, one sub-app per file; heavy imports happen inside commands."""

from __future__ import annotations

import typer

from console import cli_presets, cli_runs, cli_train

app = typer.Typer(
    name="imgcls-console",
    help="Image-classification experiments: presets, fast training, run folders, evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command()(cli_train.train)
app.command()(cli_train.resume)
app.add_typer(cli_presets.app, name="presets")
app.add_typer(cli_runs.app, name="runs")

if __name__ == "__main__":
    app()
