"""Helpers shared by the CLI commands: error reporting, stderr console, common options."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from console.fmt import fmt_bytes, fmt_count, fmt_num, fmt_pct, fmt_seconds  # noqa: F401 - re-exported

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True)
# Piped or captured output is not cut to 80 columns: tables stay whole in files and logs.
out_console = Console(width=None if sys.stdout.isatty() else 200)

RunsDirOption = Annotated[
    Path | None,
    typer.Option("--runs-dir", metavar="DIR", help="Runs folder (default: $IMGCLS_RUNS_DIR or ./runs).",
                 show_default=False),
]
OverrideOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config value, e.g. --set optim.lr=0.2 (repeatable); --set model=PRESET swaps a section."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout (nothing else).")]


class WarningsToStderr(logging.Handler):
    """The engine's logged warnings (a user preset shadowing a built-in, ...) as `warning:` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"[yellow]warning:[/] {escape(record.getMessage())}", highlight=False, soft_wrap=True)


def install_warning_handler() -> None:
    """Route the `engine` loggers' warnings to stderr, once."""
    engine_log = logging.getLogger("engine")
    if not any(isinstance(h, WarningsToStderr) for h in engine_log.handlers):
        engine_log.addHandler(WarningsToStderr(logging.WARNING))


def reports_errors(func: F) -> F:
    """Turn the engine's user-facing errors into a one-line message on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from engine.errors import EngineError

        try:
            return func(*args, **kwargs)
        except EngineError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # disk full, permissions, a path that is a file: the system's words suffice
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_json(payload: Any) -> None:
    """Write a JSON document to stdout (plain, no colour)."""
    import json

    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()
