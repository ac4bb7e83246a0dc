"""Helpers shared by the CLI commands: error reporting, stderr console, common options."""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from console.fmt import fmt_bytes, fmt_count, fmt_num, fmt_pct, fmt_seconds  # noqa: F401 - re-exported

F = TypeVar("F", bound=Callable[..., Any])

# Messages on stderr are never broken into lines by rich: a long path stays one greppable line (the terminal wraps).
err_console = Console(stderr=True, soft_wrap=True, emoji=False)
# Piped or captured output is not cut to 80 columns: tables stay whole in files and logs.
out_console = Console(width=None if sys.stdout.isatty() else 200, emoji=False)

RunsDirOption = Annotated[
    Path | None,
    typer.Option("--runs-dir", metavar="DIR", help="Runs folder (default: $IMGCLS_RUNS_DIR or ./runs).",
                 show_default=False),
]
OverrideOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", metavar="KEY=VALUE",
                 help="Override a config value, e.g. --set optim.lr=0.2 (repeatable; several KEY=VALUE may follow one "
                      "--set: --set data.root=DIR data.csv_file=FILE); --set model=PRESET swaps a section (swaps apply "
                      "first, so fields set with them land on the new preset)."),
]
SET_FLAGS = ("--set", "-s")
KEY_VALUE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*=")  # a dotted config key and `=`: another value of the same --set
# The rule by which RUN arguments name runs (engine.runs.REFERENCE_RULE), for the commands' --help.
RUN_RULE = ("A run is named by its folder (path or name), or by its short name, the name it was started with "
            "(quickstart for quickstart-20260101-090000): that picks its newest run, and says which. Derived runs "
            "are named apart (X-ft-…, X-kfold-…/X-fold0-…), so they never make X ambiguous. A unique prefix works "
            "too; 'latest' is the newest run.")
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout (nothing else).")]


NOTED_LOGGERS = ("engine.runs",)  # their info messages (which run a short name picked) are `note:` lines


class WarningsToStderr(logging.Handler):
    """The engine's logged warnings (a user preset shadowing a built-in, ...) as `warning:` lines on stderr, and
    the notes of NOTED_LOGGERS as `note:` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        label = "[yellow]warning:[/]" if record.levelno >= logging.WARNING else "note:"
        err_console.print(f"{label} {escape(record.getMessage())}", highlight=False, soft_wrap=True)


def install_warning_handler() -> None:
    """Route the `engine` loggers' warnings (and NOTED_LOGGERS' notes) to stderr, once."""
    engine_log = logging.getLogger("engine")
    if not any(isinstance(h, WarningsToStderr) for h in engine_log.handlers):
        engine_log.addHandler(WarningsToStderr(logging.INFO))
    for name in NOTED_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)


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
        except OSError as exc:  # disk full, permissions: the system's words suffice; a file in a folder's way named
            err_console.print(f"[bold red]error:[/] {escape(os_error_line(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def os_error_line(exc: OSError) -> str:
    """The system's message, except for a file where a folder was needed (`[Errno 20] Not a directory:
    'runs/sweeps'`): which file is in the way."""
    if isinstance(exc, (NotADirectoryError, FileExistsError)) and exc.filename:
        from pathlib import Path

        path = Path(str(exc.filename))
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            inside = "" if blocker == path else f" (needed as a folder for {path})"
            return f"{blocker} is a file, not a folder{inside}"
    return str(exc)


def print_json(payload: Any) -> None:
    """Write a JSON document to stdout (plain, no colour)."""
    import json

    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def expand_overrides(args: list[str]) -> list[str]:
    """`--set A=1 B=2` as `--set A=1 --set B=2`: the KEY=VALUE words after a --set value are more values of it
    (a word not shaped KEY=VALUE, an option or `--` ends them). A value with spaces or `=` is one word, as before."""
    expanded: list[str] = []
    after_set = expecting_value = False
    for index, arg in enumerate(args):
        if arg == "--":
            return expanded + args[index:]
        if expecting_value:
            expanded.append(arg)
            expecting_value, after_set = False, True
            continue
        if after_set and KEY_VALUE.match(arg):
            expanded += ["--set", arg]
            continue
        expanded.append(arg)
        after_set = arg.startswith("--set=") or (arg.startswith("-s") and len(arg) > 2 and arg[2] != "-")
        expecting_value = arg in SET_FLAGS
    return expanded


class CommandGroup(TyperGroup):
    """The root command group: reads several KEY=VALUE after one --set (`expand_overrides`) in every command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _flags_take_no_value(self, ctx)  # before the root's own --help is printed, and any sub-command's
        return super().parse_args(ctx, expand_overrides(args))


def _flags_take_no_value(command: Any, ctx: Any) -> None:
    """Help shows no type after a flag (Typer 0.29 wrote `--json <bool>`, as if it took `true`)."""
    for param in command.get_params(ctx):  # --help too (made on first use, then kept)
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _flags_take_no_value(sub, ctx)


class WeightsNote:
    """An event listener printing one line when pretrained weights are loaded: all of them, or which head
    tensors were left new for this data's classes (fine-tuning on another data set)."""

    def __init__(self, shown_as: str | None = None, *, quiet: bool = False) -> None:
        self.shown_as = shown_as
        self.quiet = quiet
        self.classes: int | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        from engine.transfer import describe_loaded

        if event.get("type") == "data_ready":
            self.classes = event.get("classes")
        elif event.get("type") == "weights_loaded" and not self.quiet:
            line = describe_loaded(self.shown_as or str(event.get("source")), list(event.get("replaced") or []),
                                   self.classes)
            err_console.print(escape(line), highlight=False, soft_wrap=True)


def slurm_minutes(time_limit: str, cluster: str, wait: bool) -> int:
    """A Slurm submission's options checked together (`submit`, `sweep submit`): the time limit in whole minutes;
    a ConfigError naming the option that does not fit."""
    from engine.errors import ConfigError
    from engine.sweep import parse_duration

    seconds = parse_duration(time_limit)
    if seconds is None:
        raise ConfigError(f"--time-limit {time_limit}: expected a time such as 90m, 4h or 1h30m")
    if cluster not in ("slurm", "local"):
        raise ConfigError(f"--cluster {cluster}: expected slurm or local")
    if cluster == "local" and not wait:
        raise ConfigError("--cluster local needs --wait: a local job ends with this command")
    return max(1, round(seconds / 60))
