"""Typed events: one definition for writing and reading, tolerant readers, a writer that never glues lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.events import EVENT_SPECS, SCHEMA, EventFollower, EventWriter, parse_event, read_events, tail_events


def test_every_event_a_real_run_emits_parses(isolated_dirs: Path) -> None:
    from engine.presets import resolve_experiment
    from engine.runner import start_run

    status = start_run(resolve_experiment("quickstart", ["train.epochs=2"]), isolated_dirs / "runs")
    lines = (Path(status["run_dir"]) / "events.jsonl").read_text(encoding="utf-8").splitlines()
    raw = [json.loads(line) for line in lines]
    parsed = [parse_event(r) for r in raw]
    assert all(p is not None for p in parsed), [r for r, p in zip(raw, parsed) if p is None]
    assert {p.type for p in parsed if p} >= {"run_start", "data_ready", "model_ready", "epoch_start", "step",
                                             "epoch", "checkpoint", "test", "run_end"}
    assert all(r["schema"] == SCHEMA for r in raw)


def test_emit_refuses_undeclared_types_and_fields(tmp_path: Path) -> None:
    writer = EventWriter(tmp_path / "events.jsonl")
    with pytest.raises(ValueError, match="unknown event type"):
        writer.emit("epoch_done", epoch=1)
    with pytest.raises(ValueError, match="does not declare"):
        writer.emit("warning", message="x", colour="red")
    writer.close()


def test_readers_skip_what_is_not_an_event_and_keep_unknown_fields(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = {"type": "epoch", "time": 1.0, "epoch": 1, "train_loss": 0.5, "train_acc": 0.9, "lr": 0.1,
            "val_loss": "nan", "future_field": [1, 2]}
    junk = ["42", "[1, 2]", '"text"', "not json", json.dumps({"type": "epoch", "time": 1.0}),
            json.dumps({**good, "epoch": "three"}), json.dumps({**good, "train_loss": True}),
            json.dumps({"type": "from_the_future", "time": 2.0, "x": 1}), "[" * 5000 + "]" * 5000]
    path.write_text("\n".join([*junk, json.dumps(good)]) + "\n", encoding="utf-8")
    events = list(read_events(path))
    assert len(events) == 1
    assert events[0]["future_field"] == [1, 2] and events[0]["val_loss"] != events[0]["val_loss"]  # NaN back


def test_writer_starts_on_a_fresh_line_after_a_torn_one(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"type": "epoch", "time": 1.0, "epo', encoding="utf-8")  # killed mid-write
    writer = EventWriter(path)
    writer.emit("run_start", run="r", name="r", pid=1)
    writer.close()
    assert [e.type for e in read_events(path)] == ["run_start"]


def test_follower_waits_for_a_late_file_and_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    follower = EventFollower(path)
    assert follower.poll() == []  # not there yet
    line = json.dumps({"type": "warning", "time": 1.0, "message": "hello"})
    path.write_text(line[:10], encoding="utf-8")
    assert follower.poll() == []  # torn: wait for its end
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line[10:] + "\n")
    assert [e["message"] for e in follower.poll()] == ["hello"]
    assert follower.poll() == []
    path.write_text("", encoding="utf-8")  # replaced under the reader
    assert follower.poll() == [] and follower.restarted


def test_every_spec_documents_itself() -> None:
    assert all(spec.doc and spec.required for spec in EVENT_SPECS.values())
    events, offset = tail_events(Path("missing.jsonl"), 0)
    assert events == [] and offset == 0
