"""UI test fixtures: finished runs trained once per session (real training on the digits), copied per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def _train(root: Path, name: str, overrides: list[str]) -> Path:
    from engine.presets import resolve_experiment
    from engine.runner import start_run

    config = resolve_experiment("quickstart", ["train.epochs=2", *overrides])
    config.name = name
    return Path(start_run(config, root)["run_dir"])


@pytest.fixture(scope="session")
def _trained_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trained-runs")
    old = os.environ.get("IMGCLS_DATA_DIR")
    os.environ["IMGCLS_DATA_DIR"] = str(root / "data")
    try:
        _train(root, "quickstart", [])
        _train(root, "quickstart-b", ["train.seed=1", "optim.lr=0.1"])
    finally:
        if old is None:
            os.environ.pop("IMGCLS_DATA_DIR", None)
        else:
            os.environ["IMGCLS_DATA_DIR"] = old
    return root


def _copy_run(source_root: Path, prefix: str, runs_root: Path) -> Path:
    source = next(p for p in sorted(source_root.iterdir()) if p.name.startswith(prefix + "-2"))
    runs_root.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(source, runs_root / source.name))


@pytest.fixture
def runs_root(isolated_dirs: Path) -> Path:
    """The test's runs folder ($IMGCLS_RUNS_DIR)."""
    return isolated_dirs / "runs"


@pytest.fixture
def trained_run(_trained_runs: Path, runs_root: Path) -> Path:
    """A finished 2-epoch quickstart run in the test's runs folder."""
    return _copy_run(_trained_runs, "quickstart", runs_root)


@pytest.fixture
def second_run(_trained_runs: Path, runs_root: Path) -> Path:
    """Another finished 2-epoch quickstart run (other seed and lr) in the test's runs folder."""
    return _copy_run(_trained_runs, "quickstart-b", runs_root)
