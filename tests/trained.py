"""Real finished runs trained once for a module or a session, and per-test copies of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def train_template(factory: pytest.TempPathFactory, folder: str, experiment: str, overrides: list[str]) -> Path:
    """Train `experiment` with `overrides` to its end once, with runs, user presets and data in a folder of its own
    (offline); its run folder is returned for tests to copy (`copy_run`), never to change."""
    from engine.presets import resolve_experiment
    from engine.runner import start_run

    home = factory.mktemp(folder)
    with pytest.MonkeyPatch.context() as patch:
        for variable, name in (("IMGCLS_RUNS_DIR", "runs"), ("IMGCLS_PRESETS_DIR", "user-presets"),
                               ("IMGCLS_DATA_DIR", "data")):
            patch.setenv(variable, str(home / name))
        patch.setenv("IMGCLS_OFFLINE", "1")
        status = start_run(resolve_experiment(experiment, overrides), home / "runs")
    assert status["state"] == "finished", status
    return Path(status["run_dir"])


def copy_run(template: Path, runs: Path) -> Path:
    """A test's own copy of a template run, in its runs folder (the template's lock file left behind)."""
    target = runs / template.name
    shutil.copytree(template, target, ignore=shutil.ignore_patterns(".lock"))
    return target
