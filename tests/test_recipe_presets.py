"""The write-ups' recipes as written (issue 14, item 11): the plain presets follow USERS.md, and what they added
beyond it survives as named variants."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from engine import presets
from engine.config import ExperimentConfig
from engine.models import create_model
from engine.models.layers import ShakeDrop

EXPERIMENTS = sorted(p.stem for p in (presets.builtin_dir() / "experiment").glob("*.yaml"))
TINY200 = (200, 3, 40)  # classes, channels, size of the write-up's 40 px data set


def _built(config: ExperimentConfig) -> nn.Module:
    """The experiment's model for the 40 px data, on the meta device (shapes only: fast, no memory)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # init functions warn that meta tensors are skipped
        with torch.device("meta"):
            return create_model(config.model.name, *TINY200, config.model.dropout, **config.model.options)


def _shakedrops(model: nn.Module) -> int:
    return sum(isinstance(m, ShakeDrop) for m in model.modules())


def test_plain_resnet50_recipes_have_no_shakedrop() -> None:
    # USERS.md: ResNet-18/50 adapted to small images with dropout before the head; ShakeDrop only in EfficientNet
    plain = [n for n in EXPERIMENTS if n.startswith("tiny200-resnet50") and not n.endswith("-shakedrop")]
    assert {"tiny200-resnet50", "tiny200-resnet50-100ep", "tiny200-resnet50-batch32"} <= set(plain)
    for name in [*plain, "tiny200-finetune"]:
        config = presets.resolve_experiment(name)
        assert config.model.name == "resnet50" and config.model.options.get("residual_drop", "none") == "none", name
        assert _shakedrops(_built(config)) == 0, name
    model = presets.load_mapping(presets.find_preset("model", "resnet50-small"))
    assert "residual_drop" not in model["options"] and "ShakeDrop" not in model["description"]


def test_resnet50_shakedrop_variant_keeps_the_former_recipe() -> None:
    variant = presets.resolve_experiment("tiny200-resnet50-shakedrop")
    plain = presets.resolve_experiment("tiny200-resnet50")
    assert variant.model.options == {**plain.model.options, "residual_drop": "shakedrop", "drop_rate": 0.5}
    assert variant.model.dropout == plain.model.dropout == 0.8
    assert (variant.augment, variant.optim, variant.schedule, variant.train.epochs, variant.eval) == (
        plain.augment, plain.optim, plain.schedule, plain.train.epochs, plain.eval)
    assert _shakedrops(_built(variant)) == 16  # one per bottleneck block (3 + 4 + 6 + 3)
    text = (presets.builtin_dir() / "experiment" / "tiny200-resnet50-shakedrop.yaml").read_text()
    assert text.startswith("# A variant, not the write-up's recipe") and "variant" in variant.description


def _shakedrops_per_stage(model: nn.Module) -> list[int]:
    """ShakeDrop modules in each stage of an EfficientNet (features[1:-1]: the stages of blocks)."""
    return [_shakedrops(stage) for stage in model.features[1:-1]]


def test_plain_efficientnet_has_shakedrop_only_mid_network() -> None:
    # USERS.md: EfficientNet-V2-S, first two stride-2 convs at stride 1, "ShakeDrop inserted mid-network"
    from torchvision.ops import StochasticDepth

    for name in ("tiny200-efficientnet-v2-s", "tiny200-efficientnet-v2-s-dropout08"):
        model = _built(presets.resolve_experiment(name))
        assert _shakedrops_per_stage(model) == [0, 0, 4, 6, 0, 0], name  # every block of stages 3 and 4
        kept = [sum(isinstance(m, StochasticDepth) for m in stage.modules()) for stage in model.features[1:-1]]
        assert kept == [2, 4, 0, 0, 9, 15], name  # the other blocks keep torchvision's stochastic depth
    variant = _built(presets.resolve_experiment("tiny200-efficientnet-v2-s-shakedrop-all"))
    assert _shakedrops_per_stage(variant) == [2, 4, 4, 6, 9, 15]  # the former recipe: ShakeDrop on every block
    text = (presets.builtin_dir() / "experiment" / "tiny200-efficientnet-v2-s-shakedrop-all.yaml").read_text()
    assert text.startswith("# A variant, not the write-up's recipe")


def test_shakedrop_stages_out_of_range_names_the_key() -> None:
    from engine.errors import ModelError

    expected = r"model\.options\.shakedrop_stages: efficientnet_v2_s has stages 1\.\.6; got 7"
    with pytest.raises(ModelError, match=expected):
        with torch.device("meta"):
            create_model("efficientnet_v2_s", 10, 3, 40, residual_drop="shakedrop", shakedrop_stages=[3, 7])
