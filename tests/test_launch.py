"""Runs in the background: launch_run / follow / request_stop / launch_resume with real child processes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import ConfigError, DataError
from engine.launch import follow, launch_resume, launch_run, request_stop
from engine.presets import resolve_experiment
from engine.runs import read_status


def _types(events: list) -> list[str]:
    return [e.type for e in events]


def test_a_launched_run_is_known_at_once_and_followed_to_its_end(isolated_dirs: Path) -> None:
    handle = launch_run(resolve_experiment("quickstart", ["train.epochs=2"]), isolated_dirs / "runs")
    assert handle.run_dir.is_dir() and (handle.run_dir / "config.yaml").is_file()
    assert read_status(handle.run_dir)["state"] in ("starting", "running")
    events = list(follow(handle.run_dir, handle=handle, timeout=240))
    assert handle.wait(30) == 0 and handle.failure() is None
    types = _types(events)
    assert types[0] == "run_start" and types[-1] == "run_end" and types.count("epoch") == 2
    assert read_status(handle.run_dir)["state"] == "finished"
    # a viewer that arrives later reads the same stream from the folder alone, and stops at its end
    assert _types(list(follow(handle.run_dir, timeout=30))) == types


def test_stop_saves_last_and_resume_finishes_the_run(isolated_dirs: Path) -> None:
    handle = launch_run(resolve_experiment("quickstart", ["train.epochs=50"]), isolated_dirs / "runs")
    seen = []
    for event in follow(handle.run_dir, handle=handle, timeout=240):
        seen.append(event)
        if event.type == "epoch" and event["epoch"] == 1:
            assert request_stop(handle.run_dir)
    assert handle.wait(30) == 130
    status = read_status(handle.run_dir)
    assert status["state"] == "interrupted" and "stop" in status["reason"] and status["epoch"] < 50
    assert "stop_requested" in _types(seen) and (handle.run_dir / "checkpoints" / "last").is_dir()
    assert not (handle.run_dir / "stop-request").exists()
    assert request_stop(handle.run_dir) is False  # nothing is training

    stopped_at = status["epoch"]
    resumed = launch_resume(handle.run_dir, [f"train.epochs={stopped_at + 1}"])
    events = list(follow(handle.run_dir, handle=resumed, timeout=240))
    assert resumed.wait(30) == 0
    epochs = [e["epoch"] for e in events if e.type == "epoch"]
    assert epochs[-1] == stopped_at + 1
    assert read_status(handle.run_dir)["state"] == "finished"


def test_a_refused_resume_reports_its_error_and_changes_nothing(isolated_dirs: Path) -> None:
    handle = launch_run(resolve_experiment("quickstart", ["train.epochs=1"]), isolated_dirs / "runs")
    assert handle.wait(240) == 0
    before = (handle.run_dir / "status.json").read_text()
    refused = launch_resume(handle.run_dir)  # nothing left to train
    assert refused.wait(120) == 2
    assert "has trained 1 epochs" in (refused.failure() or "")
    assert (handle.run_dir / "status.json").read_text() == before


def test_preflight_errors_create_nothing(isolated_dirs: Path) -> None:
    runs = isolated_dirs / "runs"
    with pytest.raises(DataError):
        launch_run(resolve_experiment("quickstart", ["data=folder-40px", f"data.root={isolated_dirs / 'nope'}"]),
                   runs)
    with pytest.raises(ConfigError):
        launch_run(resolve_experiment("quickstart", ["augment.ops=[{op: nosuchop}]"]), runs)
    assert not runs.exists() or not any(runs.iterdir())


def test_a_failure_in_the_child_keeps_the_folder_marked_failed(isolated_dirs: Path) -> None:
    root = isolated_dirs / "images"
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((12, 12, 3), 40 * c + i, np.uint8)).save(root / name / f"{i}.png")
    (root / "dog" / "broken.png").write_bytes(b"not an image at all")
    config = resolve_experiment("quickstart", ["data=folder-40px", f"data.root={root}", "data.image_size=8",
                                               "train.epochs=1"])
    handle = launch_run(config, isolated_dirs / "runs")
    events = list(follow(handle.run_dir, handle=handle, timeout=240))
    assert handle.wait(30) == 2
    status = read_status(handle.run_dir)
    assert status["state"] == "failed" and "broken.png" in status["reason"]
    assert events[-1].type == "run_end" and events[-1]["state"] == "failed"
    assert "broken.png" in (handle.failure() or "")
    assert json.loads((handle.run_dir / "status.json").read_text())["state"] == "failed"


def test_running_runs_rereads_only_what_changed(isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.runs as runs_module
    from engine.runs import RunningRuns, write_status

    root = isolated_dirs / "runs"
    for index, state in enumerate(["finished", "running", "failed"]):
        folder = root / f"run-{index}"
        folder.mkdir(parents=True)
        write_status(folder, {"state": state, "pid": os.getpid(), "host": socket.gethostname()})
    group_member = root / "exp-kfold-1" / "exp-fold0-1"
    group_member.mkdir(parents=True)
    write_status(group_member, {"state": "running", "pid": os.getpid(), "host": socket.gethostname()})
    scanner = RunningRuns(root)
    assert sorted(p.name for p in scanner.scan()) == ["exp-fold0-1", "run-1"]
    reads: list[Path] = []
    original = runs_module.read_status
    monkeypatch.setattr(runs_module, "read_status", lambda d: reads.append(d) or original(d))
    assert sorted(p.name for p in scanner.scan()) == ["exp-fold0-1", "run-1"]
    assert sorted(p.name for p in reads) == ["exp-fold0-1", "run-1"]  # finished ones are not read again
    write_status(root / "run-1", {"state": "finished"})
    assert [p.name for p in scanner.scan()] == ["exp-fold0-1"]
    quick = root / "run-3"  # started and finished between two scans: seen, as new
    quick.mkdir()
    assert [p.name for p in scanner.scan()] == ["exp-fold0-1"]  # no status yet: not a run to show
    write_status(quick, {"state": "finished"})
    assert sorted(p.name for p in scanner.scan()) == ["exp-fold0-1", "run-3"]


def test_a_stop_asked_while_the_run_is_still_starting_is_honoured(isolated_dirs: Path) -> None:
    handle = launch_run(resolve_experiment("quickstart", ["train.epochs=500"]), isolated_dirs / "runs")
    assert request_stop(handle.run_dir)  # the child is still importing torch
    assert handle.wait(240) == 130
    status = read_status(handle.run_dir)
    assert status["state"] == "interrupted" and status["epoch"] < 500
