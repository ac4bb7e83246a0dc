"""Evaluation progress, cancellation and warnings as data; references resolved by the engine; greedy stop reason."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from engine.ensemble import confident_mistakes, evaluate_checkpoint, evaluate_ensemble
from engine.errors import Cancelled, EngineError
from engine.members import EvalOptions, cache_path, checkpoint_ref, names_several, resolve_refs
from engine.metrics import combine
from engine.presets import resolve_experiment
from engine.progress import Progress
from engine.runner import start_run

FAST = ["data.limit=400", "train.epochs=2", "train.checkpoint.every=1", "name=progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quickstart run with a checkpoint per epoch (best and last repeat epoch-002)."""
    status = start_run(resolve_experiment("quickstart", FAST), tmp_path_factory.mktemp("progress") / "runs")
    assert status["state"] == "finished"
    return Path(status["run_dir"])


def test_progress_reports_checks_and_collects_warnings_once() -> None:
    seen: list[tuple[str, int, int]] = []
    progress = Progress(lambda stage, done, total: seen.append((stage, done, total)))
    inner = progress.prefixed("[1/2] ")
    inner.report("predicting", 1, 4)
    inner.warn("flip never trained")
    progress.warn("flip never trained")
    assert seen == [("[1/2] predicting", 1, 4)] and progress.warnings == ["flip never trained"]
    progress.cancel.set()
    with pytest.raises(Cancelled):
        inner.report("predicting", 2, 4)  # the prefixed view shares the cancel flag
    assert issubclass(Cancelled, EngineError)


def test_evaluation_reports_batches_and_returns_tta_warnings(run_dir: Path) -> None:
    ref = checkpoint_ref(run_dir, "best")
    seen: list[tuple[str, int, int]] = []
    progress = Progress(lambda stage, done, total: seen.append((stage, done, total)))
    options = EvalOptions(split="val", tta="flip")
    result = evaluate_checkpoint(ref, options, "logits", plot=False, progress=progress)
    assert seen[-1][1] == seen[-1][2] > 0 and all(0 <= done <= total for _, done, total in seen)
    assert any("view 2/2: hflip" in stage for stage, _, _ in seen)
    assert len(progress.warnings) == 1 and "training never applied hflip" in progress.warnings[0]
    again = Progress(lambda stage, done, total: seen.append((stage, done, total)))
    cached = evaluate_checkpoint(ref, options, "logits", plot=False, progress=again)
    assert cached["cached"] and cached["accuracy"] == result["accuracy"] and "cached" in seen[-1][0]
    assert again.warnings == progress.warnings  # warnings are data even when nothing is recomputed


def test_cancel_stops_between_batches_and_writes_nothing(run_dir: Path) -> None:
    ref = checkpoint_ref(run_dir, "epoch-001")
    options = EvalOptions(split="val", tta="random:6")
    progress = Progress()
    progress.callback = lambda stage, done, total: progress.cancel.set() if done >= 2 else None
    with pytest.raises(Cancelled):
        evaluate_checkpoint(ref, options, "probs", plot=False, progress=progress)
    evals = run_dir / "evals"
    assert not list(evals.glob("epoch-001-val-random*.json")) and not list(evals.glob("cache/.*.tmp"))
    done = evaluate_checkpoint(ref, options, "probs", plot=False)  # the same request runs fully afterwards
    assert done["views"] == 6 and not done["cached"] and Path(done["path"]).is_file()
    assert cache_path(ref, done["cache_key"]).is_file()


def test_ensemble_cancelled_before_the_second_member(run_dir: Path) -> None:
    refs = [checkpoint_ref(run_dir, "epoch-001"), checkpoint_ref(run_dir, "epoch-002")]
    stages: list[str] = []
    progress = Progress()

    def on_progress(stage: str, done: int, total: int) -> None:
        stages.append(stage)
        if stage.startswith("[1/2]") and done == total:
            progress.cancel.set()

    progress.callback = on_progress
    with pytest.raises(Cancelled):
        evaluate_ensemble(refs, EvalOptions(split="val", tta="none"), "logits", progress=progress)
    assert stages and not any(stage.startswith("[2/2]") for stage in stages)


def test_resolve_refs_expands_all_and_notes_repeated_weights(run_dir: Path) -> None:
    root = run_dir.parent
    refs, notes = resolve_refs(root, [f"{run_dir.name}:all", f"{run_dir.name}:last"])
    assert [r.name for r in refs] == ["epoch-001", "epoch-002"]
    assert notes == [f"{run_dir.name}:last holds the same weights as {run_dir.name}:epoch-002; counted once"]
    assert names_several(root, f"{run_dir.name}:all") and not names_several(root, run_dir.name)


def test_greedy_selection_records_steps_and_why_it_stopped(run_dir: Path) -> None:
    refs = [checkpoint_ref(run_dir, "epoch-001"), checkpoint_ref(run_dir, "epoch-002")]
    stages: list[str] = []
    progress = Progress(lambda stage, done, total: stages.append(stage))
    record = evaluate_ensemble(refs, EvalOptions(split="test"), "probs", greedy_split="val", progress=progress)
    greedy = record["greedy"]
    assert greedy["trace"] and all(step["tried"] >= 1 for step in greedy["trace"])
    assert greedy["stopped"].startswith(("stopped: the best remaining candidate", "every candidate was added"))
    assert any(stage.startswith("greedy on val: step 1: scoring") for stage in stages)


def test_confident_mistakes_are_the_wrong_predictions_most_probable_first() -> None:
    logits = torch.tensor([[[4.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 2.0]]])  # predicts 0, 1, 0, 1
    labels = torch.tensor([1, 1, 1, 0])
    mistakes = confident_mistakes(combine(logits, "logits"), labels, ["cat", "dog"])
    assert [m["position"] for m in mistakes] == [0, 2, 3]
    assert mistakes[0]["true"] == "dog" and mistakes[0]["predicted"] == "cat"
    assert mistakes[0]["confidence"] == pytest.approx(torch.tensor([4.0, 0.0]).softmax(0)[0].item())


def test_the_dataset_cache_loads_once_for_concurrent_threads(run_dir: Path) -> None:
    from engine.inference import cached_dataset

    data = checkpoint_ref(run_dir, "best").config.data
    found: list[object] = []
    threads = [threading.Thread(target=lambda: found.append(cached_dataset(data))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 4 and all(item is found[0] for item in found)
