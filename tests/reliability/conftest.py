"""One real training run shared by the reliability tests that damage checkpoints: each test damages its own
copy, in its own runs folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch quickstart run with checkpoints last, best, epoch-001 and epoch-002 (trained once)."""
    from engine.presets import resolve_experiment
    from engine.runner import start_run

    home = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGCLS_RUNS_DIR", str(home / "runs"))
        patch.setenv("IMGCLS_PRESETS_DIR", str(home / "user-presets"))
        patch.setenv("IMGCLS_DATA_DIR", str(home / "data"))
        patch.setenv("IMGCLS_OFFLINE", "1")
        config = resolve_experiment("quickstart", ["train.epochs=2", "train.checkpoint.every=1",
                                                   "train.checkpoint.best_metric=val_acc",
                                                   "train.checkpoint.best_mode=max"])
        status = start_run(config, home / "runs")
    assert status["state"] == "finished"
    return Path(status["run_dir"])


@pytest.fixture
def trained_run(trained_template: Path, isolated_dirs: Path) -> Path:
    """This test's own copy of the template run, in its runs folder (`IMGCLS_RUNS_DIR`)."""
    target = isolated_dirs / "runs" / trained_template.name
    shutil.copytree(trained_template, target, ignore=shutil.ignore_patterns(".lock"))
    return target
