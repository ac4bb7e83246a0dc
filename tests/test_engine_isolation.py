"""engine/ never imports a UI library; the CLI's --help path never imports torch (fresh interpreters)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint('\\n'.join(sys.modules))"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return {line.split(".")[0] for line in out.splitlines()}


def test_engine_imports_no_ui_library() -> None:
    modules = sorted(p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
                     for p in (REPO / "engine").rglob("*.py"))
    imports = "\n".join(f"import {m.removesuffix('.__init__')}" for m in modules)
    loaded = _modules_after(imports)
    assert not loaded & {"textual", "rich", "typer"}, loaded & {"textual", "rich", "typer"}


def test_cli_help_path_does_not_import_torch() -> None:
    loaded = _modules_after("import console.cli")
    assert "torch" not in loaded
    result = subprocess.run([sys.executable, "-m", "console.cli", "--help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout


def test_coordinating_a_sweep_does_not_import_torch() -> None:
    """The modules a sweep's parent and the console use to read studies, claim trials and stop gracefully are
    torch-free (the trials' training processes import it)."""
    loaded = _modules_after("import engine.stop, engine.sweep, engine.sweep_trials, engine.sweep_workers, "
                            "engine.sweep_view")
    assert "torch" not in loaded
