"""Extending a run (`resume --set train.epochs=N`): finished epochs keep their LR, the LR never jumps, the
extension is recorded in the run's config (re-runnable, exactly resumable) and `schedule preview` shows it."""

from __future__ import annotations

import json
import shutil
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from console.cli import app
from engine import checkpoint as ckpt
from engine.config import ScheduleConfig
from engine.events import read_events
from engine.optim import LRSchedule, preview_schedule
from engine.preview import schedule_preview
from engine.runs import read_config
from engine.runtime import StopRequest
from engine.schedule_extension import extend_schedule, extension_segment
from engine.runner import resume_run, start_run
from trained import copy_run, train_template

ORIGINAL = ["train.epochs=2", "data.limit=300", "schedule=cosine", "schedule.interval=step", "train.log_every=1",
            "train.deterministic=true"]


@pytest.fixture(scope="module")
def finished_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch run whose cosine decays every step (trained once for this module)."""
    return train_template(tmp_path_factory, "extend", "quickstart", ORIGINAL)


@pytest.fixture
def finished(finished_template: Path, isolated_dirs: Path) -> Path:
    """This test's own copy of the finished run, in its runs folder."""
    return copy_run(finished_template, isolated_dirs / "runs")


def _step_lrs(run_dir: Path) -> list[float]:
    """The LR each step event recorded (the LR after that step), in order of the global step."""
    return [float(e["lr"]) for e in read_events(run_dir / "events.jsonl", {"step"})]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights of the run's `last` checkpoint."""
    return ckpt.load_checkpoint(run_dir / "checkpoints" / "last").weights


def _resume(run: Path, *args: str) -> None:
    """`resume RUN ARGS` through the CLI; it must succeed."""
    result = CliRunner().invoke(app, ["resume", str(run), "-q", *args])
    assert result.exit_code == 0, result.output


def test_extending_a_run_keeps_every_finished_lr_and_never_jumps(finished: Path, isolated_dirs: Path) -> None:
    before = _step_lrs(finished)
    _resume(finished, "--set", "train.epochs=4")
    after = _step_lrs(finished)
    config = read_config(finished)
    steps = len(before) // 2
    assert after[:len(before)] == before and len(after) == 2 * len(before)
    # the run's config now describes its whole past: its schedule gives every step the LR it had
    series = [lr for _, lr in schedule_preview(config, steps).series]
    assert after == series[1:] + series[-1:]  # each event records the LR after its step
    assert all(b <= a for a, b in pairwise(after))  # decays, then holds: never up, no saw-tooth
    assert set(after[len(before) - 1:]) == {before[-1]}  # the extension holds the LR reached
    epoch_lrs = [e["lr"] for e in read_events(finished / "events.jsonl", {"epoch"})]
    assert len(epoch_lrs) == 4 and epoch_lrs[2:] == [before[-1]] * 2
    said = {e["type"]: e["message"] for e in read_events(finished / "events.jsonl", {"note", "warning"})}
    assert said == {"note": "schedule: cosine over epochs 1-2, then epochs 3-4 holding the LR reached"}  # the plan
    assert config.schedule.plan_epochs == 2 and [(s.name, s.epochs) for s in config.schedule.extend] == [
        ("constant", 2)]
    # recorded, so its config.yaml re-runs it: the same weights as trained in two sessions
    replay = start_run(read_config(finished), isolated_dirs / "replay")
    for key, value in _weights(Path(replay["run_dir"])).items():
        assert torch.equal(value, _weights(finished)[key]), key


def test_a_chosen_extension_decays_from_the_lr_reached_and_resumes_exactly(finished: Path,
                                                                           isolated_dirs: Path) -> None:
    whole = isolated_dirs / "runs" / "whole"
    shutil.copytree(finished, whole, ignore=shutil.ignore_patterns(".lock"))
    reached = _step_lrs(finished)[-1]
    _resume(whole, "--set", "train.epochs=4", "--extend-schedule", "cosine")
    stop = StopRequest()

    def stop_in_epoch_four(event: dict) -> None:
        if event["type"] == "step" and event["epoch"] == 4 and event["step"] == 2:
            stop.count = 1  # as a first Ctrl-C: the step ends, `last` is saved mid-epoch
    cut = resume_run(finished, overrides=["train.epochs=4"], extend="cosine", listeners=[stop_in_epoch_four],
                     stop=stop)
    assert cut["state"] == "interrupted"
    assert resume_run(finished)["state"] == "finished"  # no further extension: the recorded plan goes on
    for key, value in _weights(whole).items():
        assert torch.equal(value, _weights(finished)[key]), key
    extension = _step_lrs(whole)[16:]  # the LR after each step of epochs 3 and 4
    assert extension[0] <= reached and extension[0] > 0.9 * reached  # from the LR reached: no jump
    assert all(b < a for a, b in pairwise(extension[:-1])) and extension[-1] < reached / 50  # cosine to 0
    assert [s.name for s in read_config(finished).schedule.extend] == ["cosine"]


def test_schedule_preview_shows_a_run_extended(finished: Path) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["schedule", "preview", finished.name, "--epochs", "6", "--extend-schedule",
                                "multistep-10", "--json"])
    assert shown.exit_code == 0, shown.output
    preview = json.loads(shown.stdout)
    recorded = schedule_preview(read_config(finished), preview["steps_per_epoch"]).series
    assert preview["series"][:len(recorded)] == [list(point) for point in recorded]  # the past as it was
    assert {lr for _, lr in preview["series"][len(recorded):]} == {recorded[-1][1]}  # milestone 10 is after 6
    assert preview["pieces"] == [[0, "cosine"], [2, "multistep"]] and "epochs 3-6" in preview["plan"]
    text = runner.invoke(app, ["schedule", "preview", finished.name, "--epochs", "3"])
    assert text.exit_code == 0 and "epoch    3" in text.stdout and "<- extension: constant" in text.stdout


@pytest.mark.parametrize(("command", "args", "said"), [
    (["schedule", "preview"], ["--extend-schedule", "cosine"], "does not go past them"),
    (["resume"], ["--set", "train.epochs=3", "--extend-schedule", "onecycle"], "cannot continue from the LR reached"),
    (["resume"], ["--set", "train.epochs=3", "--extend-schedule", "cosine-warmup"], "warms up"),
])
def test_a_bad_extension_is_one_line_and_changes_nothing(finished: Path, command: list[str], args: list[str],
                                                         said: str) -> None:
    config_before = (finished / "config.yaml").read_text()
    result = CliRunner().invoke(app, [*command, finished.name, *args])
    assert result.exit_code == 2 and said in result.stderr
    assert result.stderr.strip().startswith("error: --extend-schedule") and result.stderr.strip().count("\n") == 0
    assert (finished / "config.yaml").read_text() == config_before


def test_extension_and_shortening_keep_the_planned_lrs_and_restore_exactly() -> None:
    plan = ScheduleConfig(name="cosine", interval="step", warmup_epochs=1)
    planned = preview_schedule(plan, base_lr=0.1, epochs=6, steps_per_epoch=3)
    shorter = extend_schedule(plan, old_epochs=6, new_epochs=4)
    assert shorter.plan_epochs == 6 and preview_schedule(shorter, base_lr=0.1, epochs=4, steps_per_epoch=3) == \
        planned[:12]
    longer = extend_schedule(extend_schedule(plan, old_epochs=6, new_epochs=8), old_epochs=8, new_epochs=11,
                             segment=extension_segment("exponential-0.7"))
    series = [lr for _, lr in preview_schedule(longer, base_lr=0.1, epochs=11, steps_per_epoch=3)]
    assert series[:18] == [lr for _, lr in planned] and set(series[17:25]) == {planned[-1][1]}
    assert series[25] == pytest.approx(planned[-1][1] * 0.7 ** (1 / 3))
    # a schedule restored at any step of the extension goes on exactly as one never stopped
    for stop_at in (19, 25, 31):
        first = LRSchedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), longer, epochs=11,
                           steps_per_epoch=3, base_lr=0.1)
        for step in range(stop_at):
            first.step_batch()
            if (step + 1) % 3 == 0:
                first.step_epoch({})
        restored = LRSchedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=9.0), longer, epochs=11,
                              steps_per_epoch=3, base_lr=0.1)
        restored.load_state_dict(first.state_dict())
        assert restored.lr() == series[stop_at]


def test_a_fine_tune_of_an_extended_run_plans_its_own_schedule(finished: Path) -> None:
    from engine.runner import finetune_config

    _resume(finished, "--set", "train.epochs=3")
    extended = read_config(finished)
    assert extended.schedule.plan_epochs == 2 and extended.schedule.extend
    config = finetune_config(finished / "checkpoints" / "last", extended)
    assert config.schedule.plan_epochs is None and config.schedule.extend == []
