"""Ensembles (mean of members, greedy selection, mismatched members), predictions CSV, and their CLI commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from console.cli import app
from engine.ensemble import combine_members, evaluate_ensemble, member_predictions
from engine.errors import CheckpointError
from engine.members import EvalOptions, checkpoint_ref, view_logits
from engine.presets import resolve_experiment
from engine.runner import start_run

runner = CliRunner()
FAST = ["data.limit=400", "train.epochs=3", "train.checkpoint.every=1"]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two quickstart runs (seeds 0 and 1), each with a checkpoint per epoch."""
    root = tmp_path_factory.mktemp("ensemble") / "runs"
    for seed in (0, 1):
        status = start_run(resolve_experiment("quickstart", [*FAST, f"train.seed={seed}", f"name=seed{seed}"]), root)
        assert status["state"] == "finished"
    return root


def _run(root: Path, prefix: str) -> Path:
    return next(p for p in root.iterdir() if p.name.startswith(prefix))


def test_ensemble_logits_equal_the_mean_of_members_logits(runs_root: Path) -> None:
    seed0, seed1 = _run(runs_root, "seed0"), _run(runs_root, "seed1")
    refs = [checkpoint_ref(seed0, "epoch-002"), checkpoint_ref(seed0, "epoch-003"), checkpoint_ref(seed1, "best")]
    options = EvalOptions(split="test", tta="none")
    alone = [view_logits(ref, options).logits[0] for ref in refs]
    combined = combine_members(member_predictions(refs, options), "logits")
    assert torch.allclose(combined.scores, torch.stack(alone).mean(0), atol=1e-6)
    record = evaluate_ensemble(refs, options, "logits", out_dir=runs_root / "ensembles")
    labels = view_logits(refs[0], options).labels
    assert record["accuracy"] == pytest.approx((torch.stack(alone).mean(0).argmax(1) == labels).double().mean().item())
    saved = json.loads(Path(record["path"]).read_text())
    assert saved["kind"] == "ensemble" and saved["members"] == [r.label for r in refs]
    assert [m["member"] for m in saved["member_metrics"]] == saved["members"] and saved["cached"] is True
    assert Path(saved["confusion_png"]).is_file()


def test_greedy_selection_adds_members_while_validation_improves(runs_root: Path) -> None:
    seed0, seed1 = _run(runs_root, "seed0"), _run(runs_root, "seed1")
    refs = [checkpoint_ref(d, f"epoch-00{e}") for d in (seed0, seed1) for e in (1, 2, 3)]
    record = evaluate_ensemble(refs, EvalOptions(split="test"), "probs", greedy_split="val")
    trace = record["greedy"]["trace"]
    assert record["members"] == [step["added"] for step in trace] and 1 <= len(trace) <= len(refs)
    scores = [(step["accuracy"], -step["loss"]) for step in trace]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)  # each step strictly improved
    best_single = max(view_logits(r, EvalOptions(split="val")).logits[0].argmax(1).eq(
        view_logits(r, EvalOptions(split="val")).labels).double().mean().item() for r in refs)
    assert trace[-1]["accuracy"] >= best_single


def _digit_pngs(folder: Path, images: torch.Tensor) -> list[str]:
    folder.mkdir(parents=True)
    ids = [f"img{i:03d}" for i in range(len(images))]
    for image_id, image in zip(ids, images):
        Image.fromarray(image[0].numpy(), mode="L").save(folder / f"{image_id}.png")
    return ids


def test_predictions_csv_one_row_per_image_with_class_names(runs_root: Path, tmp_path: Path) -> None:
    from engine.data import load_dataset

    seed0 = _run(runs_root, "seed0")
    ref = checkpoint_ref(seed0)
    dataset = load_dataset(ref.config.data)
    rows = dataset.test_idx[:25]
    ids = _digit_pngs(tmp_path / "unlabeled", dataset.images[rows])
    out = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", seed0.name, "--images", str(tmp_path / "unlabeled"), "--out", str(out),
                                 "--runs-dir", str(runs_root)])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["Id", "Category"] and [r[0] for r in table[1:]] == ids
    assert all(r[1] in ref.classes for r in table[1:])
    evaluated = view_logits(ref, EvalOptions(split="test")).logits[0][:25].argmax(1)
    assert [r[1] for r in table[1:]] == [ref.classes[i] for i in evaluated.tolist()]  # same pixels, same answers
    flipped = runner.invoke(app, ["predict", seed0.name, "--images", str(tmp_path / "unlabeled"), "--out",
                                  str(tmp_path / "flip.csv"), "--tta", "flip", "--runs-dir", str(runs_root)])
    assert flipped.exit_code == 0 and "tta flip: training never applied hflip" in flipped.output  # as eval says
    ensemble_out = tmp_path / "ensemble.csv"
    result = runner.invoke(app, ["predict", seed0.name, f"{_run(runs_root, 'seed1').name}:last", "--images",
                                 str(tmp_path / "unlabeled"), "--out", str(ensemble_out), "--combine", "vote",
                                 "--tta", "shift:1", "--runs-dir", str(runs_root), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 25 and len(summary["members"]) == 2 and sum(summary["predicted_counts"].values()) == 25
    assert len(ensemble_out.read_text().splitlines()) == 26


def test_members_from_different_datasets_are_refused(runs_root: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    generator = np.random.default_rng(0)
    for index, name in enumerate(["cat", "dog", "owl"]):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for k in range(8):
            pixels = (generator.random((8, 8)) * 50 + 70 * index).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(tmp_path / "pets" / name / f"{k}.png")
    overrides = ["data.source=folder", f"data.root={tmp_path / 'pets'}", "data.channels=1", "train.epochs=1",
                 "data.test_fraction=0.25", "name=pets"]
    pets = start_run(resolve_experiment("quickstart", overrides), runs_root)
    assert pets["state"] == "finished"
    refs = [checkpoint_ref(_run(runs_root, "seed0")), checkpoint_ref(Path(pets["run_dir"]))]
    with pytest.raises(CheckpointError, match="3 classes, not 10"):
        evaluate_ensemble(refs, EvalOptions(split="test"))
    result = runner.invoke(app, ["ensemble", _run(runs_root, "seed0").name, "pets", "--runs-dir", str(runs_root)])
    assert result.exit_code == 2 and "3 classes, not 10" in result.output


def test_eval_and_ensemble_commands_and_runs_show(runs_root: Path) -> None:
    seed0 = _run(runs_root, "seed0").name
    result = runner.invoke(app, ["eval", f"{seed0}:epoch-002", "--split", "val", "--tta", "flip", "--json",
                                 "--runs-dir", str(runs_root)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["checkpoint"] == "epoch-002" and record["split"] == "val" and record["views"] == 2
    assert set(record) >= {"accuracy", "top5", "loss", "per_class", "confusion", "most_confused"}
    shown = runner.invoke(app, ["eval", seed0, "--runs-dir", str(runs_root)], terminal_width=200)
    assert shown.exit_code == 0 and "accuracy" in shown.stdout and "most confused" in shown.stdout
    missing = runner.invoke(app, ["eval", f"{seed0}:epoch-099", "--runs-dir", str(runs_root)])
    assert missing.exit_code == 2 and "epoch-001" in missing.output
    listed = runner.invoke(app, ["runs", "show", seed0, "--runs-dir", str(runs_root)], terminal_width=200)
    assert listed.exit_code == 0 and "evaluations" in listed.stdout and "epoch-002" in listed.stdout
    ensembled = runner.invoke(app, ["ensemble", f"{seed0}:epoch-001", f"{seed0}:epoch-003", "--greedy",
                                    "--runs-dir", str(runs_root)], terminal_width=200)
    assert ensembled.exit_code == 0, ensembled.output
    assert "greedy selection" in ensembled.stdout and "members" in ensembled.stdout
    assert list((runs_root / "ensembles").glob("ensemble-test-*.json"))


def test_eval_of_every_checkpoint_lists_each_distinct_weights_once(runs_root: Path) -> None:
    seed0 = _run(runs_root, "seed0").name
    result = runner.invoke(app, ["eval", f"{seed0}:all", "--split", "val", "--json", "--runs-dir", str(runs_root)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["evaluations"]
    assert [r["checkpoint"] for r in rows] == ["epoch-001", "epoch-002", "epoch-003"]  # best and last repeat one
    shown = runner.invoke(app, ["eval", f"{seed0}:all", "--split", "val", "--runs-dir", str(runs_root)],
                          terminal_width=200)
    assert shown.exit_code == 0 and "3 checkpoints on val" in shown.stdout and "best" in shown.stdout
    single = start_run(resolve_experiment("quickstart", ["data.limit=200", "train.epochs=1", "name=single"]),
                       runs_root)  # best, last and nothing else: one distinct checkpoint, still a list
    only = runner.invoke(app, ["eval", f"{Path(single['run_dir']).name}:all", "--json", "--runs-dir", str(runs_root)])
    assert only.exit_code == 0 and len(json.loads(only.stdout)["evaluations"]) == 1
    doubled = runner.invoke(app, ["ensemble", f"{seed0}:last", f"{seed0}:epoch-003", "--json",
                                  "--runs-dir", str(runs_root)])
    assert doubled.exit_code == 0 and len(json.loads(doubled.stdout)["members"]) == 1
    assert "holds the same weights as" in doubled.stderr


def test_predict_stops_on_a_bad_image_unless_told_to_skip(tmp_path: Path) -> None:
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "quickstart", "--json", "-q", "--set", "train.epochs=1",
                                  "--set", "data.limit=200"])
    assert trained.exit_code == 0, trained.output
    run = json.loads(trained.stdout)["run_dir"]
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    for index in range(3):
        Image.new("L", (8, 8), color=index * 60).save(folder / f"img{index}.png")
    (folder / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "sub.csv"
    stopped = runner.invoke(app, ["predict", run, "--images", str(folder), "--out", str(out)])
    assert stopped.exit_code == 2 and "broken.png" in stopped.output and not out.exists()
    skipped = runner.invoke(app, ["predict", run, "--images", str(folder), "--out", str(out), "--skip-bad-images"])
    assert skipped.exit_code == 0 and "broken" in skipped.output
    assert out.read_text().count("\n") == 4  # header + the three readable images
    assert "1 unreadable image has no row" in skipped.output
    (folder / "broken.png").unlink()
    (folder / "later").mkdir()
    Image.new("L", (8, 8)).save(folder / "later" / "img9.png")
    piped = runner.invoke(app, ["predict", run, "--images", str(folder), "--out", "-"])
    assert piped.exit_code == 0 and piped.stdout.splitlines()[0] == "Id,Category"
    assert len(piped.stdout.splitlines()) == 4 and not (tmp_path / "-").exists()  # the CSV on stdout, not a file `-`
    assert "1 image file in its sub-folders not read" in piped.stderr and "written to stdout" in piped.stderr
    one = runner.invoke(app, ["predict", run, "--images", str(folder / "img1.png"), "--out", "-"])
    assert one.exit_code == 0 and one.stdout.splitlines()[1].startswith("img1,")  # one image file, not a folder
    both = runner.invoke(app, ["predict", run, "--images", str(folder), "--out", "-", "--json"])
    assert both.exit_code == 2 and "--out - writes the CSV to stdout" in both.stderr
