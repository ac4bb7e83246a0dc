"""Running the CLI in-process for the reliability tests: a refusal is one `error:` line, never a traceback."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from console.cli import app


def invoke(*args: str) -> Any:
    """Run a CLI command in-process; it must end by its own exit, never by an exception's traceback."""
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def error_line(result: Any) -> str:
    """The one `error:` line of a refused command (exit status 2)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]
