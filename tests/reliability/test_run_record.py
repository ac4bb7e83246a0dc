"""A run's record is never corrupted: one writer per folder, refused resumes change nothing, junk event lines
are skipped by every reader (issue 10, items 1-3)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from console.cli import app
from engine.presets import resolve_experiment
from engine.runner import start_run
from engine.runs import RunLock, epoch_rows


def _finished_run(root: Path, epochs: int = 1) -> Path:
    return Path(start_run(resolve_experiment("quickstart", [f"train.epochs={epochs}"]), root)["run_dir"])


def _resume(run_dir: Path, epochs: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "console.cli", "resume", str(run_dir), "--quiet",
                             "--set", f"train.epochs={epochs}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_a_second_writer_is_refused_at_once_naming_the_holder(isolated_dirs: Path) -> None:
    run_dir = _finished_run(isolated_dirs / "runs")
    before = (run_dir / "status.json").read_text()
    with RunLock(run_dir):
        process = _resume(run_dir, 3)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "is being trained by pid" in err and "one process at a time" in err and "Traceback" not in err
    assert (run_dir / "status.json").read_text() == before


def test_two_resumes_started_together_train_each_epoch_once(isolated_dirs: Path) -> None:
    run_dir = _finished_run(isolated_dirs / "runs")
    first, second = _resume(run_dir, 8), _resume(run_dir, 8)
    results = [(p.wait(240), p.stderr.read() if p.stderr else "") for p in (first, second)]
    codes = sorted(code for code, _ in results)
    # one trains; the other is refused by the lock, or (if it came after) finds nothing left to train
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is being trained by" in refused or "has trained 8 epochs" in refused
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    trained = [e["epoch"] for e in events if e.get("type") == "epoch"]
    assert trained == list(range(1, 9))


class _Payload:
    def __reduce__(self) -> tuple:
        return (print, ("payload ran",))


def test_a_refused_resume_leaves_status_and_config_as_they_were(isolated_dirs: Path) -> None:
    run_dir = _finished_run(isolated_dirs / "runs")
    for name in ("last", "best"):  # every checkpoint with training state is unsafe: nothing to fall back to
        state = run_dir / "checkpoints" / name / "state.pt"
        if state.is_file():
            state.write_bytes(pickle.dumps({"optimizer": _Payload()}))
    status, config = (run_dir / "status.json").read_text(), (run_dir / "config.yaml").read_text()
    result = CliRunner().invoke(app, ["resume", str(run_dir), "--set", "train.epochs=3"])
    assert result.exit_code != 0 and "payload ran" not in result.output
    assert (run_dir / "status.json").read_text() == status
    assert (run_dir / "config.yaml").read_text() == config
    lines = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e["type"] == "warning" and e["message"].startswith("resume refused") for e in lines)


def test_junk_event_lines_are_skipped_by_every_reader(isolated_dirs: Path) -> None:
    run_dir = _finished_run(isolated_dirs / "runs", epochs=2)
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as handle:
        handle.write('42\n[1, 2]\n{"type": "epoch"}\n{"type": "epoch", "time": 1, "epoch": "x"}\n'
                     '{"type": "epoch", "time": 1, "epoch": 3, "train_loss": "high", "train_acc": 1, "lr": 1}\n')
    assert [r["epoch"] for r in epoch_rows(run_dir)] == [1, 2]
    runner = CliRunner()
    for args in (["runs", "show", str(run_dir)], ["runs", "list"],
                 ["report", str(run_dir), "--out", str(isolated_dirs / "report")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Traceback" not in result.output
