"""Experiment presets: every USERS.md experiment resolves, uses its section presets, and its model builds."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from engine import config as cfg
from engine import presets
from engine.models import create_model
from engine.runner import start_run

# The shipped experiments (collected before the fixtures isolate the user preset folder, so read from the package).
EXPERIMENTS = sorted(p.stem for p in (presets.builtin_dir() / "experiment").glob("*.yaml"))

# Model and augmentation presets that come from the USERS.md write-ups (not quickstart's or extra ones).
USERS_MODELS = [
    "basicblocknet", "resnet18-small", "resnet50-small", "efficientnet-v2-s-small", "efficientnet-b4-pretrained",
    "mnist-logreg", "mnist-mlp2-sigmoid", "mnist-mlp2-relu", "mnist-mlp2-bn", "mnist-mlp2-bn-after",
    "mnist-mlp3-bn", "cifar-conv1", "cifar-conv1-pool", "cifar-conv1-bn", "cifar-conv2", "cifar-conv3",
    "cifar-vgg6", "cifar-inception4", "resnet9", "speedrun",
]
USERS_AUGMENTS = [
    "none", "flip", "flip-uniform", "flip-translate", "flip-translate-erase", "randaugment", "small200-apply",
    "small200-randaugment", "fashion-224", "mnist-choice", "crop-flip", "autoaugment-cifar10",
]

# experiment -> (its base chain, nearest first, and the model preset it must resolve to exactly)
LADDERS: dict[str, tuple[list[str], str]] = {
    "mnist-logreg": ([], "mnist-logreg"),
    "mnist-mlp2-sigmoid": (["mnist-logreg"], "mnist-mlp2-sigmoid"),
    "mnist-mlp2-relu": (["mnist-mlp2-sigmoid", "mnist-logreg"], "mnist-mlp2-relu"),
    "mnist-mlp2-bn": (["mnist-mlp2-relu", "mnist-mlp2-sigmoid", "mnist-logreg"], "mnist-mlp2-bn"),
    "mnist-mlp2-bn-after": (["mnist-mlp2-relu", "mnist-mlp2-sigmoid", "mnist-logreg"], "mnist-mlp2-bn-after"),
    "mnist-mlp3-bn": (["mnist-mlp2-bn", "mnist-mlp2-relu", "mnist-mlp2-sigmoid", "mnist-logreg"], "mnist-mlp3-bn"),
    "mnist-mlp3-bn-exp": (["mnist-mlp3-bn", "mnist-mlp2-bn", "mnist-mlp2-relu", "mnist-mlp2-sigmoid",
                           "mnist-logreg"], "mnist-mlp3-bn"),
    "mnist-mlp3-bn-poly": (["mnist-mlp3-bn", "mnist-mlp2-bn", "mnist-mlp2-relu", "mnist-mlp2-sigmoid",
                            "mnist-logreg"], "mnist-mlp3-bn"),
    "mnist-mlp3-bn-aug": (["mnist-mlp3-bn-exp", "mnist-mlp3-bn", "mnist-mlp2-bn", "mnist-mlp2-relu",
                           "mnist-mlp2-sigmoid", "mnist-logreg"], "mnist-mlp3-bn"),
    "cifar10-conv1": (["cifar10-ladder"], "cifar-conv1"),
    "cifar10-conv1-pool": (["cifar10-conv1", "cifar10-ladder"], "cifar-conv1-pool"),
    "cifar10-conv1-bn": (["cifar10-conv1-pool", "cifar10-conv1", "cifar10-ladder"], "cifar-conv1-bn"),
    "cifar10-conv2": (["cifar10-conv1-bn", "cifar10-conv1-pool", "cifar10-conv1", "cifar10-ladder"], "cifar-conv2"),
    "cifar10-conv3": (["cifar10-conv2", "cifar10-conv1-bn", "cifar10-conv1-pool", "cifar10-conv1",
                       "cifar10-ladder"], "cifar-conv3"),
    "cifar10-vgg6": (["cifar10-ladder"], "cifar-vgg6"),
    "cifar10-inception4": (["cifar10-ladder"], "cifar-inception4"),
    "cifar10-inception4-autoaugment": (["cifar10-inception4", "cifar10-ladder"], "cifar-inception4"),
    "cifar10-resnet9": (["cifar10-ladder"], "resnet9"),
}


def _resolved(name: str) -> cfg.ExperimentConfig:
    return presets.resolve_experiment(name)


def _model_preset(name: str) -> cfg.ModelConfig:
    return cfg.section_from_dict("model", presets.load_section_preset("model", name))


def _augment_preset(name: str) -> cfg.AugmentConfig:
    return cfg.section_from_dict("augment", presets.load_section_preset("augment", name))


def _base_chain(name: str) -> list[str]:
    chain: list[str] = []
    raw = presets.load_mapping(presets.find_preset("experiment", name))
    while raw.get("base"):
        chain.append(raw["base"])
        raw = presets.load_mapping(presets.find_preset("experiment", raw["base"]))
    return chain


def _input_of(config: cfg.ExperimentConfig) -> tuple[int, int, int]:
    """(classes, channels, size) of the data an experiment trains on, from USERS.md's data sets."""
    data = config.data
    if data.source == "csv":
        return (200 if data.image_size == 40 else 20), int(data.channels or 3), int(data.image_size or 0)
    native = {"digits": (1, 8), "mnist": (1, 28), "cifar10": (3, 32)}[data.source]
    return 10, data.channels or native[0], data.image_size or native[1]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_resolves_validates_and_describes_itself(name: str) -> None:
    config = _resolved(name)
    presets.validate_deep(config, name)
    assert config.description and "\n" not in config.description and len(config.description) <= 140


def test_child_experiment_is_named_after_its_own_file() -> None:
    for name in EXPERIMENTS:
        assert _resolved(name).name == name  # run folders are named after it


def test_schedules_carry_no_fields_of_another_shape() -> None:
    for name in EXPERIMENTS:
        schedule = _resolved(name).schedule
        assert schedule.name == "multistep" or schedule.milestones == [], name  # a run's config.yaml stays honest


def test_users_model_presets_are_each_used_by_an_experiment() -> None:
    models = [_resolved(name).model for name in EXPERIMENTS]
    for preset_name in USERS_MODELS:
        preset = _model_preset(preset_name)
        assert any(m.name == preset.name and m.options == preset.options and m.pretrained == preset.pretrained
                   for m in models), f"no experiment uses model preset {preset_name}"


def test_users_augment_presets_are_each_used_by_an_experiment() -> None:
    augments = [_resolved(name).augment for name in EXPERIMENTS]
    for preset_name in USERS_AUGMENTS:
        assert _augment_preset(preset_name) in augments, f"no experiment uses augment preset {preset_name}"


@pytest.mark.parametrize("name", sorted(LADDERS))
def test_ladder_step_chains_to_its_model(name: str) -> None:
    chain, model_preset = LADDERS[name]
    assert _base_chain(name) == chain
    assert _resolved(name).model == _model_preset(model_preset)  # nothing leaks from the base's model


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_model_builds_for_its_data(name: str) -> None:
    config = _resolved(name)
    classes, channels, size = _input_of(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # init functions warn that meta tensors are skipped
        with torch.device("meta"):  # shapes only: no memory, no weights, no download
            model = create_model(config.model.name, classes, channels, size, config.model.dropout,
                                 **config.model.options)
            logits = model(torch.zeros(2, channels, size, size))
    assert tuple(logits.shape) == (2, classes)


def test_tiny200_recipes() -> None:
    base = _resolved("tiny200-basicblocknet")
    assert (base.data.source, base.data.image_size, base.data.root, base.data.val_fraction) == ("csv", 40, None, 0.2)
    assert (base.optim.name, base.optim.lr, base.optim.momentum, base.train.batch_size) == ("sgd", 0.1, 0.9, 64)
    assert base.augment.normalize == "uniform" and _resolved("tiny200-basicblocknet-datanorm").augment.normalize == "dataset"
    resnet18 = _resolved("tiny200-resnet18")
    assert resnet18.optim.nesterov and resnet18.optim.weight_decay == 1e-4 and 0.5 <= resnet18.model.dropout <= 0.8
    assert _resolved("tiny200-resnet18-plateau").schedule.name == "plateau"
    assert _resolved("tiny200-resnet18-cosine").schedule.name == "cosine"
    assert {_resolved(f"tiny200-resnet18-batch{b}").train.batch_size for b in (32, 128)} == {32, 128}
    long_run = _resolved("tiny200-resnet50")
    assert long_run.train.epochs == 60 and long_run.train.checkpoint.every == 2 and long_run.train.checkpoint.keep == 0
    assert long_run.eval.combine == "vote" and long_run.eval.tta.startswith("random:")
    effnet = _resolved("tiny200-efficientnet-v2-s")
    assert effnet.model.options["residual_drop"] == "shakedrop" and effnet.model.dropout >= 0.4
    finetune = _resolved("tiny200-finetune")
    assert finetune.optim.lr == 0.2 and finetune.train.epochs <= 10 and finetune.augment != long_run.augment
    assert finetune.model == long_run.model and "imgcls-console finetune RUN" in finetune.description


def test_fashion_recipe() -> None:
    config = _resolved("fashion-efficientnet-b4")
    assert config.model.name == "efficientnet_b4" and config.model.pretrained  # never loaded here: offline
    assert (config.data.image_size, config.data.sampler, config.data.class_weighted_loss) == (224, "weighted", True)
    assert config.data.folds == 5 and config.augment.normalize == "imagenet"
    assert (config.optim.name, config.optim.lr) == ("adam", 1e-4)
    assert (config.schedule.name, config.schedule.factor, config.schedule.patience) == ("plateau", 0.1, 5)
    stop = config.train.early_stop
    assert (stop.metric, stop.mode, stop.patience) == ("val_loss", "min", 10)
    assert (config.train.checkpoint.best_metric, config.train.checkpoint.best_mode) == ("val_loss", "min")
    assert "kfold" in config.description


@pytest.mark.parametrize("name", ["mnist-speedrun", "cifar10-speedrun"])
def test_speedruns_are_gpu_fast_settings(name: str) -> None:
    config = _resolved(name)
    assert config.model.name == "speedrun" and config.train.precision == "bf16" and config.train.compile
    assert config.train.batch_size >= 512 and config.train.epochs <= 10 and config.train.label_smoothing > 0
    assert config.optim.nesterov and config.schedule.name == "onecycle"


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """A single intra-op thread: tiny MLP ops on a busy 2-core machine are far faster without a thread pool."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_mnist_ladder_end_trains_on_embedded_digits(tmp_path: Path, one_thread: None) -> None:
    # The last MNIST step (3 FC + 2 BN, ExponentialLR 0.7, RandomChoice augmentation) on digits resized to 28 px.
    overrides = ["data.source=digits", "data.image_size=28", "data.channels=1", "data.limit=400",
                 "train.epochs=2", "train.log_every=5", "train.deterministic=true"]
    config = presets.resolve_experiment("mnist-mlp3-bn-aug", overrides)
    assert config.schedule.name == "exponential" and config.augment.ops[0]["op"] == "choice"
    status = start_run(config, tmp_path / "runs")
    assert status["state"] == "finished" and status["epoch"] == 2
    assert status["best_val_acc"] > 0.3  # ten classes: chance is 0.1
