"""The `imgcls-console` command: one Typer app, one sub-app per file; heavy imports happen inside commands."""

from __future__ import annotations

import typer

from console import cli_data, cli_eval, cli_presets, cli_runs, cli_schedule, cli_train
from console.common import install_warning_handler

install_warning_handler()

app = typer.Typer(
    name="imgcls-console",
    help="Image-classification experiments: presets, fast training, run folders, evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command()(cli_train.train)
app.command()(cli_train.resume)
app.command()(cli_train.finetune)
app.command("lr-find")(cli_schedule.lr_find)
app.add_typer(cli_presets.app, name="presets")
app.add_typer(cli_runs.app, name="runs")
app.add_typer(cli_data.app, name="data")
app.add_typer(cli_schedule.app, name="schedule")
app.command("eval")(cli_eval.eval_cmd)
app.command()(cli_eval.ensemble)
app.command()(cli_eval.predict)
app.command()(cli_eval.kfold)
app.command()(cli_eval.report)

if __name__ == "__main__":
    app()
