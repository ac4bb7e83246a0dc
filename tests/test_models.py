"""The model zoo: every registered model and preset trains one step; sizes, errors and weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from engine.config import ModelConfig, section_from_dict
from engine.errors import ConfigError, ModelError
from engine.models import (
    check_model_config,
    count_macs,
    count_params,
    create_model,
    list_models,
    model_option_names,
)

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets" / "model"


def load_preset(name: str) -> ModelConfig:
    """The validated model section of presets/model/<name>.yaml."""
    path = PRESET_DIR / f"{name}.yaml"
    return section_from_dict("model", yaml.safe_load(path.read_text()), str(path))


def train_step(model: torch.nn.Module, num_classes: int, in_channels: int, image_size: int) -> None:
    """One forward + backward on a batch of 2: output shape, finite loss, a gradient on every trainable param."""
    torch.manual_seed(0)
    model.train()
    x = torch.randn(2, in_channels, image_size, image_size)
    out = model(x)
    assert out.shape == (2, num_classes)
    loss = F.cross_entropy(out, torch.tensor([0, num_classes - 1]))
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"


def test_convnet_default_trains_on_digit_sized_input() -> None:
    model = create_model("convnet", num_classes=10, in_channels=1, image_size=8)
    train_step(model, 10, 1, 8)
    assert count_params(model) > 0
    assert count_macs(model, 1, 8) > 0


def test_convnet_too_small_input_names_minimum() -> None:
    with pytest.raises(ModelError, match="at least 4x4"):
        create_model("convnet", 10, 3, 3, channels=[8, 8], pool="max")


def test_unknown_model_and_option_messages() -> None:
    with pytest.raises(ConfigError, match=r"p.yaml: model.name: unknown model 'convnt'.*did you mean `convnet`"):
        check_model_config(ModelConfig(name="convnt"), "p.yaml")
    with pytest.raises(ConfigError, match=r"model.options.chanels: .*did you mean `channels`"):
        check_model_config(ModelConfig(name="convnet", options={"chanels": [8]}))
    assert "channels" in model_option_names("convnet")
    assert "convnet" in list_models()


def test_small_cnn_preset_size() -> None:
    cfg = load_preset("small-cnn")
    model = create_model(cfg.name, 10, 1, 8, cfg.dropout, **cfg.options)
    assert 10_000 <= count_params(model) <= 30_000
    train_step(model, 10, 1, 8)
