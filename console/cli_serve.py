"""`serve`: the console in a browser (textual-serve), localhost by default, behind a token elsewhere."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from console.common import RunsDirOption, err_console, escape

TOKEN_ENV = "IMGCLS_CONSOLE_TOKEN"


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind. Anything but loopback needs a token.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")] = 8765,
    token: Annotated[str | None, typer.Option(
        "--token", metavar="TOKEN", envvar=TOKEN_ENV, show_default=False,
        help=f"Access token every request must carry (also ${TOKEN_ENV}, which other users cannot read in ps). "
             "Generated and printed when the bind is not loopback and none is given; on loopback it is "
             "required only when given.")] = None,
    runs_dir: RunsDirOption = None,
    experiment: Annotated[str, typer.Option("--experiment", "-e", metavar="EXPERIMENT",
                                            help="Experiment composed in Launch when a session opens.")]
    = "quickstart",
) -> None:
    """Serve the console to a browser: one console process per tab, on the same runs folder.

    Closing a tab never stops a run. Recommended: keep the default localhost bind and reach it through an SSH
    tunnel (ssh -L 8765:127.0.0.1:8765 SERVER).
    """
    from console.serve import ConsoleServer, app_command, check_token, is_loopback, new_token
    from engine.runs import runs_dir as pick_runs_dir

    os.environ.pop(TOKEN_ENV, None)  # not handed down to the console processes and their runs
    if token is not None:
        try:
            check_token(token)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--token") from None
    elif not is_loopback(host):
        token = new_token()
        err_console.print(f"note: {escape(host)} is not a loopback address: generated an access token",
                          highlight=False)
    runs_root = pick_runs_dir(runs_dir).resolve()
    server = ConsoleServer(app_command(runs_root, experiment), host, port, token)
    try:
        server.serve()
    except OSError as exc:  # the port is taken, the address is not this machine's, ...
        err_console.print(f"[bold red]error:[/] cannot serve on {escape(host)}:{port}: {escape(str(exc))}",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
