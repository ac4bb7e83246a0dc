"""One real training run shared by the reliability tests that damage checkpoints: each test damages its own
copy, in its own runs folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from trained import copy_run, train_template


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch quickstart run with checkpoints last, best, epoch-001 and epoch-002 (trained once)."""
    return train_template(tmp_path_factory, "template", "quickstart", [
        "train.epochs=2", "train.checkpoint.every=1", "train.checkpoint.best_metric=val_acc",
        "train.checkpoint.best_mode=max"])


@pytest.fixture
def trained_run(trained_template: Path, isolated_dirs: Path) -> Path:
    """This test's own copy of the template run, in its runs folder (`IMGCLS_RUNS_DIR`)."""
    return copy_run(trained_template, isolated_dirs / "runs")
