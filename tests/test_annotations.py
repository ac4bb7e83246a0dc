"""A run's note and tags: engine/annotations.py, the `runs note` / `runs tag` commands, list/show/report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from console.cli import app
from engine.annotations import (
    Annotations, add_tags, matches_tag, notes_path, parse_tags, read_annotations, remove_tags, write_annotations,
)
from engine.errors import RunError
from engine.report import notes_section
from engine.runs import write_status
from tests.conftest import write

runner = CliRunner()


def fake_run(root: Path, name: str, **status: object) -> Path:
    """A run folder with only a status.json (enough for list/show/note/tag)."""
    run_dir = root / name
    (run_dir / "checkpoints").mkdir(parents=True)
    write_status(run_dir, {"state": "finished", "data": "digits", "model": "mlp", "started": 1.0, **status})
    return run_dir


def test_missing_or_damaged_notes_read_as_empty(tmp_path: Path) -> None:
    assert read_annotations(tmp_path) == Annotations()
    assert read_annotations(tmp_path / "deleted-run") == Annotations()
    for garbage in ("{not json", "[1, 2]", '{"note": 3, "tags": "a"}', "\xff\xfe"):
        write(notes_path(tmp_path), garbage)
        assert read_annotations(tmp_path) == Annotations()
    write(notes_path(tmp_path), '{"note": "kept", "tags": ["good", "bad tag", 7, "good"]}')
    assert read_annotations(tmp_path) == Annotations("kept", ["good"])


def test_write_read_round_trip_and_clearing(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, "run-a")
    written = write_annotations(run_dir, note="  lr too high?  ", tags=["baseline", "lr0.1", "baseline"])
    assert written == Annotations("lr too high?", ["baseline", "lr0.1"])
    assert json.loads(notes_path(run_dir).read_text()) == {"note": "lr too high?", "tags": ["baseline", "lr0.1"]}
    assert write_annotations(run_dir, note="second thought").tags == ["baseline", "lr0.1"]  # tags kept
    assert write_annotations(run_dir, tags=[]).note == "second thought"
    write_annotations(run_dir, note="")
    assert not notes_path(run_dir).exists() and read_annotations(run_dir).is_empty()
    assert not list(run_dir.glob(".notes.json*"))  # no temporary file left behind


def test_tags_are_plain_words(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path, "run-a")
    assert parse_tags("baseline, ema  cifar-10 baseline") == ["baseline", "ema", "cifar-10"]
    for bad in ("two words", "-dash", "a/b", "x" * 41, "", "$$"):
        with pytest.raises(RunError, match="plain word"):
            write_annotations(run_dir, tags=[bad])
    assert not notes_path(run_dir).exists()  # a refused tag writes nothing
    add_tags(run_dir, ["a", "b"])
    assert add_tags(run_dir, ["b", "c"]).tags == ["a", "b", "c"]
    assert remove_tags(run_dir, ["b"]).tags == ["a", "c"]
    with pytest.raises(RunError, match="has no tag zzz"):
        remove_tags(run_dir, ["zzz"])
    assert matches_tag(read_annotations(run_dir), "A")
    with pytest.raises(RunError, match="no such run folder"):
        write_annotations(tmp_path / "gone", note="x")


def test_cli_note_tag_list_show(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    fake_run(root, "alpha-20250101-000000", best_val_acc=0.91)
    fake_run(root, "beta-20250101-000001", started=2.0)
    args = ["--runs-dir", str(root)]
    noted = runner.invoke(app, ["runs", "note", "alpha", "first try, lr 0.05", *args])
    assert noted.exit_code == 0, noted.output
    tagged = runner.invoke(app, ["runs", "tag", "alpha", "baseline", "digits", *args])
    assert tagged.exit_code == 0 and "baseline, digits" in tagged.output
    shown = runner.invoke(app, ["runs", "show", "alpha", *args], terminal_width=200)
    assert shown.exit_code == 0 and "note: first try, lr 0.05" in shown.stdout
    assert "tags: baseline, digits" in shown.stdout
    listed = runner.invoke(app, ["runs", "list", "--tag", "baseline", *args], terminal_width=200)
    assert listed.exit_code == 0 and "alpha" in listed.stdout and "beta" not in listed.stdout
    assert "baseline digits" in listed.stdout
    as_json = json.loads(runner.invoke(app, ["runs", "list", "--json", *args]).stdout)
    assert [(r["name"][:4], r["tags"]) for r in as_json] == [("alph", ["baseline", "digits"]), ("beta", [])]
    removed = runner.invoke(app, ["runs", "tag", "alpha", "digits", "--remove", *args])
    assert removed.exit_code == 0 and read_annotations(root / "alpha-20250101-000000").tags == ["baseline"]
    cleared = runner.invoke(app, ["runs", "note", "alpha", "", *args])
    assert cleared.exit_code == 0 and "cleared" in cleared.output
    assert read_annotations(root / "alpha-20250101-000000").note == ""


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    fake_run(root, "alpha-20250101-000000")
    bad_tag = runner.invoke(app, ["runs", "tag", "alpha", "two words", "--runs-dir", str(root)])
    assert bad_tag.exit_code == 2 and "plain word" in bad_tag.output and "Traceback" not in bad_tag.output
    no_run = runner.invoke(app, ["runs", "note", "gamma", "x", "--runs-dir", str(root)])
    assert no_run.exit_code == 2 and "no run 'gamma'" in no_run.output
    bad_filter = runner.invoke(app, ["runs", "list", "--tag", "a b", "--runs-dir", str(root)])
    assert bad_filter.exit_code == 2 and "plain word" in bad_filter.output


def test_report_mentions_notes_and_tags(tmp_path: Path) -> None:
    noted = fake_run(tmp_path, "noted-run")
    plain = fake_run(tmp_path, "plain-run")
    write_annotations(noted, note="EMA | helps", tags=["ema"])
    assert notes_section([plain]) == []
    lines = notes_section([noted, plain])
    assert lines[0] == "## Notes" and "- **noted-run** [ema]: EMA \\| helps" in lines
    assert not any("plain-run" in line for line in lines)
