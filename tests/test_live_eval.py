"""Evaluating a run while it trains: each evaluation reads one whole, verified checkpoint and says its epoch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from typer.testing import CliRunner

from console.cli import app
from engine.data import load_dataset
from engine.events import Event
from engine.launch import follow, launch_run
from engine.presets import resolve_experiment

EVALUATIONS = 3  # each right after a save of `last`; the run saves it again every ~0.1 s while it is evaluated


def _next_save_of_last(events: Iterator[Event]) -> int:
    """Wait (bounded by follow's timeout) for the training run's next save of `last`; its epoch."""
    for event in events:
        if event.type == "checkpoint" and event["name"] == "last":
            return int(event["epoch"])
    raise AssertionError("the training run ended or stalled before saving `last` again")


def _evaluate(runner: CliRunner, ref: str) -> tuple[dict, str]:
    """`eval REF --split val --json`: its record and what it printed on stderr."""
    result = runner.invoke(app, ["eval", ref, "--split", "val", "--json"])
    assert result.exit_code == 0, result.output  # never "the checkpoint was replaced while being evaluated"
    return json.loads(result.stdout), result.stderr


def test_evaluating_a_run_while_it_trains_reads_one_whole_checkpoint(isolated_dirs: Path) -> None:
    config = resolve_experiment("quickstart", ["train.epochs=1000", "data.limit=200", "train.checkpoint.every=1",
                                               "train.log_every=100"])
    handle = launch_run(config, isolated_dirs / "runs")
    load_dataset(config.data)  # while the child starts: the evaluations' data (the child finds it cached)
    runner = CliRunner()
    evaluated: list[dict] = []
    try:
        events = follow(handle.run_dir, handle=handle, timeout=120)
        for _ in range(EVALUATIONS):
            saved = _next_save_of_last(events)
            record, stderr = _evaluate(runner, f"{handle.run_dir.name}:last")
            assert record["epoch"] >= saved  # the checkpoint as it was when read: this save or a newer one
            said = f"still training; evaluated its checkpoint of epoch {record['epoch']}"
            assert said in " ".join(record["warnings"]) and said in stderr
            evaluated.append(record)
    finally:
        handle.process.kill()  # our own child; its finished epochs' checkpoints stay complete
        handle.wait(60)
    # each evaluation was of one epoch's files, whole: exactly the weights of that epoch's own checkpoint
    for record in evaluated:
        kept, _ = _evaluate(runner, f"{handle.run_dir.name}:epoch-{record['epoch']:03d}")
        assert kept["cached"] and kept["cache_key"] == record["cache_key"], record["epoch"]
        assert (kept["accuracy"], kept["loss"]) == (record["accuracy"], record["loss"])
