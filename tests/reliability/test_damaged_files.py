"""A damaged file is never used, and is named (issue 10, items 4-8 and 19): checkpoints whose weights, hash
record, meta.json or state are damaged or are not what their names say; temporary folders of killed saves;
a run deleted while it is read."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from engine import checkpoint as ckpt
from engine.errors import CheckpointError
from tests.reliability.cli import error_line, invoke

REPO = Path(__file__).resolve().parents[2]


def flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def edit_meta(folder: Path, change: Any) -> None:
    meta = json.loads((folder / ckpt.META).read_text())
    change(meta)
    (folder / ckpt.META).write_text(json.dumps(meta))


def record_current_digest(folder: Path, file: str) -> None:
    """Make meta.json agree with a replaced file (as a careful forger would), so only what the file is can
    give it away."""
    digest = hashlib.sha256((folder / file).read_bytes()).hexdigest()
    edit_meta(folder, lambda meta: meta["sha256"].__setitem__(file, digest))


def run_names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


class Payload:
    """A pickle that would create `marker` if anything ever unpickled it unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------- item 4: every reader verifies the weights


def test_finetune_from_bit_flipped_weights_is_refused_before_any_run_folder(trained_run: Path) -> None:
    flip_byte(trained_run / "checkpoints" / "best" / ckpt.WEIGHTS)
    before = run_names(trained_run.parent)
    line = error_line(invoke("finetune", f"{trained_run.name}:best", "--set", "train.epochs=1"))
    assert "best/weights.safetensors" in line and "sha256" in line
    assert run_names(trained_run.parent) == before


def test_bit_flipped_weights_as_model_pretrained_are_refused(trained_run: Path) -> None:
    weights = trained_run / "checkpoints" / "epoch-001" / ckpt.WEIGHTS
    flip_byte(weights)
    line = error_line(invoke("train", "quickstart", "--set", f"model.pretrained={weights}", "--quiet"))
    assert "model.pretrained" in line and str(weights) in line and "sha256" in line
    assert run_names(trained_run.parent) == [trained_run.name]


@pytest.mark.parametrize("record", [{}, "abc", [], {"weights.safetensors": "0" * 12},
                                    {"config.yaml": "0" * 64}], ids=["empty", "string", "list", "short", "no-weights"])
def test_a_checkpoint_without_a_usable_hash_record_is_refused(trained_run: Path, record: Any) -> None:
    for name in ("last", "best", "epoch-001", "epoch-002"):
        edit_meta(trained_run / "checkpoints" / name, lambda meta: meta.__setitem__("sha256", record))
    images = write_images(trained_run.parent.parent / "images")
    status = (trained_run / "status.json").read_text()
    for args in (["eval", f"{trained_run.name}:best", "--split", "val"],
                 ["predict", f"{trained_run.name}:best", "--images", str(images), "--out", str(images / "p.csv")],
                 ["finetune", f"{trained_run.name}:best", "--set", "train.epochs=1", "--quiet"],
                 ["resume", trained_run.name, "--set", "train.epochs=3", "--quiet"]):
        line = error_line(invoke(*args))
        assert "meta.json" in line and "sha256" in line, (args, line)
    assert run_names(trained_run.parent) == [trained_run.name]
    assert (trained_run / "status.json").read_text() == status and not (images / "p.csv").exists()


def test_a_warm_evaluation_cache_never_answers_for_damaged_weights(trained_run: Path) -> None:
    assert invoke("eval", f"{trained_run.name}:best", "--split", "val").exit_code == 0
    assert list((trained_run / "evals" / "cache").glob("*.safetensors"))  # the cache is warm
    flip_byte(trained_run / "checkpoints" / "best" / ckpt.WEIGHTS)
    line = error_line(invoke("eval", f"{trained_run.name}:best", "--split", "val"))
    assert "best/weights.safetensors" in line and "sha256" in line


# ---------------------------------------------------------------- item 5: a damaged meta.json is named


DAMAGED_META = {
    "latin-1": "{\"epoch\": 1, \"name\": \"caf\xe9\"}".encode("latin-1"),
    "not-json": b"{\"epoch\": 1, \"sha256\": {",
    "a-list": b"[1, 2, 3]",
    "deep": b"[" * 20000 + b"]" * 20000,
    "classes-a-number": None,  # the real record with classes: 5
    "inputs-wrong": None,      # the real record with inputs.image_size: "big"
}


def damage_meta(folder: Path, kind: str) -> None:
    raw = DAMAGED_META[kind]
    if raw is not None:
        (folder / ckpt.META).write_bytes(raw)
    elif kind == "classes-a-number":
        edit_meta(folder, lambda meta: meta.__setitem__("classes", 5))
    else:
        edit_meta(folder, lambda meta: meta["inputs"].__setitem__("image_size", "big"))


def write_images(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new("L", (8, 8), 30 * index).save(folder / f"img{index}.png")
    return folder


@pytest.mark.parametrize("kind", list(DAMAGED_META))
def test_a_damaged_meta_json_is_one_line_naming_it(trained_run: Path, kind: str) -> None:
    damage_meta(trained_run / "checkpoints" / "best", kind)
    images = write_images(trained_run.parent.parent / "images")
    ref = f"{trained_run.name}:best"
    for args in (["eval", ref, "--split", "val"], ["finetune", ref, "--set", "train.epochs=1", "--quiet"],
                 ["predict", ref, "--images", str(images), "--out", str(images.parent / "out.csv")],
                 ["eval", trained_run.name]):  # the default checkpoint is `best`: named, never passed over
        line = error_line(invoke(*args))
        assert "best/meta.json" in line and "damaged" in line, args
    assert run_names(trained_run.parent) == [trained_run.name]


def test_a_damaged_checkpoint_is_named_and_left_out_of_run_all(trained_run: Path) -> None:
    damage_meta(trained_run / "checkpoints" / "epoch-001", "not-json")
    result = invoke("eval", f"{trained_run.name}:all", "--split", "val", "--json")
    assert result.exit_code == 0, result.output
    assert "epoch-001 left out" in result.output and "epoch-001/meta.json" in result.output


# ---------------------------------------------------------------- item 6: resume falls back, saying what it costs


def test_resume_point_falls_back_to_the_newest_intact_checkpoint(trained_run: Path) -> None:
    checkpoints = trained_run / "checkpoints"
    flip_byte(checkpoints / "last" / ckpt.STATE)
    (checkpoints / "epoch-002" / ckpt.META).write_bytes(b"\x00garbage")
    best_epoch = json.loads((checkpoints / "best" / ckpt.META).read_text())["epoch"]
    if best_epoch == 2:
        flip_byte(checkpoints / "best" / ckpt.WEIGHTS)
    point = ckpt.resume_point(trained_run)
    assert point.folder.name == ("epoch-001" if best_epoch == 2 else "best") and point.epoch == 1
    assert point.epochs_lost == 1
    note = point.note()
    assert note is not None and "epoch 1" in note and "1 epoch(s)" in note and "last: state.pt" in note


def test_resume_point_is_last_when_it_is_sound(trained_run: Path) -> None:
    point = ckpt.resume_point(trained_run)
    assert point.folder.name == "last" and point.epoch == 2 and point.note() is None


def test_no_intact_checkpoint_is_refused_naming_each_problem(trained_run: Path) -> None:
    checkpoints = trained_run / "checkpoints"
    for name in ("last", "best", "epoch-001", "epoch-002"):
        flip_byte(checkpoints / name / ckpt.STATE)
    with pytest.raises(CheckpointError) as caught:
        ckpt.resume_point(trained_run)
    message = str(caught.value)
    assert all(f"{name}: state.pt: content does not match" in message
               for name in ("last", "best", "epoch-001", "epoch-002")), message


def test_resume_with_damaged_last_continues_from_an_intact_checkpoint(trained_run: Path) -> None:
    flip_byte(trained_run / "checkpoints" / "last" / ckpt.WEIGHTS)
    result = invoke("resume", trained_run.name, "--set", "train.epochs=3", "--quiet")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in (trained_run / "events.jsonl").read_text().splitlines()]
    notes = [e["message"] for e in events if e["type"] == "warning" and "resuming from checkpoint" in e["message"]]
    assert len(notes) == 1 and "last: weights.safetensors" in notes[0], notes
    assert ckpt.load_checkpoint(trained_run / "checkpoints" / "last").meta["epoch"] == 3


@pytest.mark.parametrize("kind", ["latin-1", "a-list"])
def test_resume_with_a_damaged_meta_json_is_one_line(trained_run: Path, kind: str) -> None:
    for name in ("last", "best", "epoch-001", "epoch-002"):
        damage_meta(trained_run / "checkpoints" / name, kind)
    line = error_line(invoke("resume", trained_run.name, "--set", "train.epochs=3"))
    assert "last/meta.json" in line or "last: meta.json" in line


# ---------------------------------------------------------------- item 7: files that are not what their names say


def test_a_pickle_named_weights_safetensors_is_named_as_such(trained_run: Path, isolated_dirs: Path) -> None:
    folder = trained_run / "checkpoints" / "best"
    marker = isolated_dirs / "payload-ran"
    (folder / ckpt.WEIGHTS).write_bytes(pickle.dumps(Payload(marker)))
    record_current_digest(folder, ckpt.WEIGHTS)
    line = error_line(invoke("eval", f"{trained_run.name}:best", "--split", "val"))
    assert "best/weights.safetensors: not a readable safetensors file: it is a raw Python pickle" in line
    assert not marker.exists()


@pytest.mark.parametrize("form", ["raw-pickle", "torch-archive"])
def test_an_unsafe_state_pt_is_refused_in_one_line(trained_run: Path, isolated_dirs: Path, form: str) -> None:
    folder = trained_run / "checkpoints" / "last"
    marker = isolated_dirs / "payload-ran"
    if form == "raw-pickle":
        (folder / ckpt.STATE).write_bytes(pickle.dumps({"optimizer": Payload(marker)}))
    else:
        torch.save({"optimizer": Payload(marker)}, folder / ckpt.STATE)
    record_current_digest(folder, ckpt.STATE)
    for name in ("best", "epoch-001", "epoch-002"):  # the only state left is the unsafe one
        shutil.rmtree(trained_run / "checkpoints" / name)
    status = (trained_run / "status.json").read_text()
    line = error_line(invoke("resume", trained_run.name, "--set", "train.epochs=3", "--quiet"))
    assert ("last/state.pt" in line or "last: state.pt" in line) and "refused" in line  # with resume_point: the latter
    assert ("raw Python pickle" in line) if form == "raw-pickle" else ("posix.system" in line)
    assert "weights_only" not in line and "likely succeed" not in line
    assert not marker.exists() and (trained_run / "status.json").read_text() == status


def test_an_unsafe_pickle_as_model_pretrained_is_refused_in_one_line(isolated_dirs: Path) -> None:
    marker = isolated_dirs / "payload-ran"
    evil = isolated_dirs / "weights.pt"
    torch.save({"state_dict": Payload(marker)}, evil)
    line = error_line(invoke("train", "quickstart", "--set", f"model.pretrained={evil}", "--quiet"))
    assert f"model.pretrained: {evil}: refused" in line and "posix.system" in line
    assert "weights_only" not in line and "likely succeed" not in line
    assert not marker.exists() and run_names(isolated_dirs / "runs") == []


# ---------------------------------------------------------------- item 8: temporary folders of killed saves


KILLED_SAVE = """
import os, signal, sys, torch
from pathlib import Path
from engine import checkpoint as ckpt
ckpt._swap_in = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # die between writing and renaming in
ckpt.save_checkpoint(Path(sys.argv[1]), "last", weights={"w": torch.zeros(1000)}, config_text="x",
                     meta={"epoch": 9}, state={"epoch": 9})
"""

HOLDER = "import sys; sys.stdin.read()"  # a live process that may own a temporary folder


def test_temporary_folders_of_killed_saves_are_removed_when_the_run_is_next_written(trained_run: Path) -> None:
    checkpoints = trained_run / "checkpoints"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(checkpoints)], env=env)
    assert killed.returncode == -signal.SIGKILL
    left = sorted(p.name for p in checkpoints.iterdir() if p.name.startswith(".tmp-"))
    assert len(left) == 1 and (checkpoints / left[0] / ckpt.WEIGHTS).is_file()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE)
    try:
        prefix, _pid, stamp = left[0].rsplit("-", 2)
        owned = checkpoints / f"{prefix}-{holder.pid}-{stamp}"
        owned.mkdir()  # a folder of a process that is alive: it may still be writing it
        result = invoke("resume", trained_run.name, "--set", "train.epochs=3", "--quiet")
        assert result.exit_code == 0, result.output
        remaining = sorted(p.name for p in checkpoints.iterdir() if p.name.startswith(".tmp-"))
        assert remaining == [owned.name]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert ckpt.load_checkpoint(checkpoints / "last").meta["epoch"] == 3


# ---------------------------------------------------------------- item 19: a run deleted while it is read


@pytest.mark.parametrize("when", ["loading", "predicting"])
def test_a_run_deleted_while_evaluated_is_one_error_and_stays_deleted(trained_run: Path, when: str) -> None:
    from engine.ensemble import evaluate_checkpoint
    from engine.errors import EngineError
    from engine.members import EvalOptions, checkpoint_ref
    from engine.progress import Progress

    ref = checkpoint_ref(trained_run, "epoch-001")

    def delete_the_run(stage: str, done: int, total: int) -> None:
        if trained_run.exists() and (when in stage or (when == "predicting" and stage.endswith(": val"))):
            shutil.rmtree(trained_run)

    with pytest.raises(EngineError, match="deleted while"):
        evaluate_checkpoint(ref, EvalOptions(split="val"), progress=Progress(delete_the_run))
    assert not trained_run.exists()
