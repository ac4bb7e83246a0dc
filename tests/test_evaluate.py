"""Evaluation: combining rules, metrics against scikit-learn, TTA views, the prediction cache, EMA, wrong data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import checkpoint as ckpt
from engine.ensemble import evaluate_checkpoint
from engine.errors import CheckpointError, ConfigError
from engine.members import EvalOptions, checkpoint_ref, parse_ref, view_logits
from engine.metrics import classification_metrics, combine
from engine.presets import resolve_experiment
from engine.runs import read_status
from engine.runner import start_run

FAST = ["data.limit=400", "train.epochs=3", "train.checkpoint.every=1", "train.ema_decay=0.5"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quickstart run (EMA on, a checkpoint per epoch) shared by the tests of this file."""
    status = start_run(resolve_experiment("quickstart", FAST), tmp_path_factory.mktemp("eval") / "runs")
    assert status["state"] == "finished"
    return Path(status["run_dir"])


def test_combine_logits_and_probs_are_means() -> None:
    stack = torch.randn(3, 7, 5, generator=torch.Generator().manual_seed(0))
    by_logits = combine(stack, "logits")
    assert torch.allclose(by_logits.scores, stack.mean(0))
    assert torch.allclose(by_logits.log_probs.exp(), stack.mean(0).softmax(1), atol=1e-6)
    by_probs = combine(stack, "probs")
    assert torch.allclose(by_probs.log_probs.exp(), stack.softmax(2).mean(0), atol=1e-6)
    with pytest.raises(ConfigError, match="combine"):
        combine(stack, "median")


def test_vote_majority_then_probability_then_lowest_index() -> None:
    # (members, samples, classes). Sample 0: two votes for class 2 beat one very confident vote for class 0
    # (whose mean probability is higher). Sample 1: one vote each; class 1 has the highest mean probability.
    stack = torch.tensor([
        [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]],
        [[0.0, 0.0, 1.0], [0.0, 5.0, 0.0]],
        [[20.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
    ])
    assert combine(stack, "probs").predictions.tolist()[0] == 0
    assert combine(stack, "vote").predictions.tolist() == [2, 1]
    assert combine(stack.flip(0), "vote").predictions.tolist() == [2, 1]  # member order does not matter
    mirrored = torch.tensor([[[5.0, 1.0, 1.0]], [[1.0, 5.0, 1.0]]])  # votes and mean probabilities tie exactly
    assert combine(mirrored, "vote").predictions.tolist() == [0]
    assert combine(mirrored.flip(0), "vote").predictions.tolist() == [0]


def test_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(60, 4, generator=generator)
    labels = torch.randint(0, 4, (60,), generator=generator)
    metrics = classification_metrics(combine(logits[None], "logits"), labels, ["a", "b", "c", "d"])
    predictions = logits.argmax(1).numpy()
    assert metrics["confusion"] == confusion_matrix(labels.numpy(), predictions, labels=range(4)).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(labels.numpy(), predictions, labels=range(4),
                                                                     zero_division=0)
    assert np.allclose([r["precision"] for r in metrics["per_class"]], precision)
    assert np.allclose([r["recall"] for r in metrics["per_class"]], recall)
    assert np.allclose([r["f1"] for r in metrics["per_class"]], f1)
    assert [r["support"] for r in metrics["per_class"]] == support.tolist()
    assert metrics["loss"] == pytest.approx(log_loss(labels.numpy(), logits.softmax(1).numpy(), labels=range(4)),
                                            rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(float((predictions == labels.numpy()).mean()))
    assert metrics["top5"] == 1.0 and metrics["top_k"] == 4
    pairs = metrics["most_confused"]
    assert all(pairs[i]["count"] >= pairs[i + 1]["count"] for i in range(len(pairs) - 1))


def test_identity_view_equals_plain_evaluation(run_dir: Path) -> None:
    """TTA `none` is the trainer's own evaluation: same logits, and the run's recorded test accuracy."""
    from engine.augment import Augmenter, resolve_normalization
    from engine.data import BatchLoader, load_dataset
    from engine.evaluate import loss_and_accuracy, predict_logits
    from engine.models import create_model

    ref = checkpoint_ref(run_dir, "best")
    config = ref.config
    dataset = load_dataset(config.data)
    mean, std = resolve_normalization(config.augment, dataset.mean, dataset.std, dataset.channels)
    augmenter = Augmenter(config.augment, mean=mean, std=std, num_classes=10, device=torch.device("cpu"))
    model = create_model(config.model.name, 10, dataset.channels, dataset.image_size, **config.model.options)
    model.load_state_dict(ckpt.load_checkpoint(ref.folder).ema)  # eval.use_ema defaults to true
    loader = BatchLoader(dataset.images, dataset.labels, dataset.test_idx, batch_size=64, device=torch.device("cpu"),
                         shuffle=False, drop_last=False, seed=0)
    plain, labels = predict_logits(model, loader, augmenter.eval_batch, amp_dtype=None, channels_last=False)
    views = view_logits(ref, EvalOptions(split="test", tta="none"))
    assert views.views == ["identity"] and views.logits.shape == (1, *plain.shape)
    tolerance = 1e-2 if torch.cuda.is_available() else 1e-5  # with a GPU the views ran there (TF32 convolutions)
    assert torch.allclose(views.logits[0], plain, atol=tolerance) and torch.equal(views.labels, labels)
    result = evaluate_checkpoint(ref, EvalOptions(split="test", tta="none"))
    assert result["accuracy"] == pytest.approx(loss_and_accuracy(plain, labels)[1])
    assert result["accuracy"] == pytest.approx(read_status(run_dir)["test_acc"])
    assert result["use_ema"] is True


def test_ema_weights_are_used_unless_refused(run_dir: Path) -> None:
    ref = parse_ref(run_dir.parent, f"{run_dir.name}:epoch-001")
    with_ema = view_logits(ref, EvalOptions(split="val"))
    raw = view_logits(ref, EvalOptions(split="val", use_ema=False))
    assert with_ema.key != raw.key and not torch.allclose(with_ema.logits, raw.logits)
    record = evaluate_checkpoint(ref, EvalOptions(split="val", use_ema=False))
    assert record["use_ema"] is False and Path(record["path"]).name == "epoch-001-val-none-raw.json"


def test_cached_evaluation_is_returned_without_recomputation(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("evals"))
    ref = checkpoint_ref(copy, "last")
    options = EvalOptions(split="test", tta="flip")
    first = evaluate_checkpoint(ref, options)
    assert first["cached"] is False and len(list((copy / "evals" / "cache").glob("*.safetensors"))) == 1
    second = evaluate_checkpoint(ref, options, "probs")
    assert second["cached"] is True and second["cache_key"] == first["cache_key"]
    again = evaluate_checkpoint(ref, options)
    assert again["cached"] is True and {k: again[k] for k in ("accuracy", "loss", "confusion")} == {
        k: first[k] for k in ("accuracy", "loss", "confusion")}
    for name in (ckpt.WEIGHTS, ckpt.EMA):  # the cache is keyed by the verified weights: it never answers alone
        (copy / "checkpoints" / "last" / name).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        evaluate_checkpoint(ref, options)


def test_tta_views_records_and_confusion_png(run_dir: Path) -> None:
    ref = checkpoint_ref(run_dir)
    options = EvalOptions(split="val", tta="flip+shift:1+random:2")
    views = view_logits(ref, options)
    assert views.views == ["identity", "hflip", "shift:1,1", "shift:1,-1", "shift:-1,1", "shift:-1,-1",
                           "random", "random"]
    cache_file = next(p for p in (run_dir / "evals" / "cache").glob("*.safetensors") if views.key in p.name)
    cache_file.unlink()
    recomputed = view_logits(ref, options)  # the random passes are seeded: the same numbers again
    assert torch.equal(recomputed.logits, views.logits) and not recomputed.cached
    result = evaluate_checkpoint(ref, options, "vote")
    saved = json.loads(Path(result["path"]).read_text())
    assert saved["views"] == 8 and saved["combine"] == "vote" and saved["tta"] == "flip+shift:1+random:2"
    assert len(saved["confusion"]) == 10 and sum(map(sum, saved["confusion"])) == saved["count"]
    with Image.open(result["confusion_png"]) as image:
        assert image.format == "PNG"


def _class_folders(root: Path, names: list[str], per_class: int = 6) -> Path:
    generator = np.random.default_rng(0)
    for index, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = (generator.random((8, 8)) * 60 + index * 60).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / name / f"{k}.png")
    return root


def test_checkpoint_on_other_classes_fails_clearly(run_dir: Path, tmp_path: Path) -> None:
    other = _class_folders(tmp_path / "shapes", ["circle", "square", "triangle"])
    ref = checkpoint_ref(run_dir)
    overrides = ["data.source=folder", f"data.root={other}", "data.image_size=8", "data.channels=1"]
    with pytest.raises(CheckpointError) as error:
        evaluate_checkpoint(ref, EvalOptions(split="test", overrides=overrides))
    message = str(error.value)
    assert "3 classes, not 10" in message and ref.label in message and "circle" in message
    with pytest.raises(ConfigError, match="architecture"):
        evaluate_checkpoint(ref, EvalOptions(overrides=["model.dropout=0.5"]))


def test_class_mismatch_messages_name_the_difference() -> None:
    from engine.errors import classes_mismatch

    renamed = classes_mismatch(["cat", "dog"], "checkpoint a:best", ["cat", "fox"], "the folder data")
    assert "different class names (fox not in checkpoint a:best)" in renamed and "cat, dog" in renamed
    reordered = classes_mismatch(["cat", "dog"], "checkpoint a:best", ["dog", "cat"], "checkpoint b:best")
    assert "another order" in reordered


def test_a_run_remembers_its_inputs_and_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run folder keeps absolute data paths and the normalization it trained with: predictions need neither
    the training images nor the working directory it was started from."""
    from engine.predict import predict_folder

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMGCLS_DATA_DIR", str(tmp_path / "cache"))
    _class_folders(tmp_path / "shapes", ["circle", "square", "triangle"], per_class=10)
    overrides = ["data=folder-40px", "data.root=shapes", "data.image_size=8", "data.channels=1",
                 "model=mnist-logreg", "augment=none", "train.epochs=2", "data.val_fraction=0.2"]
    status = start_run(resolve_experiment("quickstart", overrides), tmp_path / "runs")
    run = Path(status["run_dir"])
    assert read_status(run)["state"] == "finished"
    ref = checkpoint_ref(run)
    assert ref.config.data.root == str(tmp_path / "shapes")
    inputs = ref.meta["inputs"]
    assert inputs["image_size"] == 8 and inputs["channels"] == 1
    from engine.data import load_dataset

    trained_on = load_dataset(ref.config.data)
    assert inputs["mean"] == trained_on.mean and inputs["std"] == trained_on.std  # the training statistics
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    for index, path in enumerate(sorted((tmp_path / "shapes" / "square").iterdir())[:4]):
        shutil.copy(path, unlabeled / f"x{index}.png")
    before = predict_folder([ref], unlabeled, tmp_path / "before.csv", EvalOptions())
    shutil.move(tmp_path / "shapes", tmp_path / "elsewhere")  # the training images are gone
    monkeypatch.chdir(tmp_path / "runs")
    after = predict_folder([checkpoint_ref(run)], unlabeled, tmp_path / "after.csv", EvalOptions())
    assert after["images"] == 4
    assert (tmp_path / "before.csv").read_text() == (tmp_path / "after.csv").read_text()
    assert before["predicted_counts"] == after["predicted_counts"]
