"""Shared fixtures: every test gets its own runs, presets and data folders (never the user's)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point runs, user presets and the data cache at a temporary folder."""
    monkeypatch.setenv("IMGCLS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("IMGCLS_PRESETS_DIR", str(tmp_path / "user-presets"))
    monkeypatch.setenv("IMGCLS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMGCLS_OFFLINE", "1")  # no test may try a real download
    # Tables laid out at a known width: a CI runner with a terminal made `runs list` fit 80 columns (tests that
    # check narrow layouts set COLUMNS themselves)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    """Write a text file, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
