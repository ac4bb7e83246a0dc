"""The model zoo: every registered model and preset trains one step; sizes, errors and weight loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file

from engine.config import ModelConfig, section_from_dict
from engine.errors import ConfigError, ModelError
from engine.models import (
    check_model_config,
    count_macs,
    count_params,
    create_model,
    head_parameter_names,
    list_models,
    load_pretrained,
    model_option_names,
    set_backbone_trainable,
)
from engine.models.layers import ShakeDrop
from engine.presets import model_preset_input
from engine.preview import model_preset_size

PRESET_DIR = Path(__file__).resolve().parents[1] / "presets" / "model"


def load_preset(name: str) -> ModelConfig:
    """The validated model section of presets/model/<name>.yaml."""
    path = PRESET_DIR / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw.pop("description", None), str), f"{path} needs a one-line description"
    raw.pop("sized_for", None)
    return section_from_dict("model", raw, str(path))


def preset_input(name: str) -> tuple[int, int, int]:
    """(classes, channels, size) a built-in model preset is sized for: each one says."""
    found, said = model_preset_input(PRESET_DIR / f"{name}.yaml")
    assert said, f"presets/model/{name}.yaml: no sized_for"
    return found


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


# ---------------------------------------------------------------- every model, every preset

PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
USERS_MD_PRESETS = [
    "mnist-logreg", "mnist-mlp2-sigmoid", "mnist-mlp2-relu", "mnist-mlp2-bn", "mnist-mlp3-bn",
    "cifar-conv1", "cifar-conv1-pool", "cifar-conv1-bn", "cifar-conv2", "cifar-conv3", "cifar-vgg6",
    "cifar-inception4", "resnet9", "basicblocknet", "resnet18-small", "resnet50-small",
    "efficientnet-v2-s-small", "efficientnet-b4-pretrained", "speedrun", "small-cnn",
]
# The largest input the CPU test builds; bigger presets (224 px) are tested at this size instead.
MAX_TEST_SIZE = 64


@pytest.mark.parametrize("name", list_models())
def test_registered_model_trains_on_rgb_and_gray(name: str) -> None:
    model = create_model(name, num_classes=7, in_channels=3, image_size=32)
    train_step(model, 7, 3, 32)
    gray = create_model(name, num_classes=3, in_channels=1, image_size=32)
    gray.eval()
    with torch.no_grad():
        assert gray(torch.randn(1, 1, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_at_its_input_size(name: str) -> None:
    cfg = load_preset(name)
    check_model_config(cfg, name)
    num_classes, in_channels, image_size = preset_input(name)
    assert model_preset_size(PRESET_DIR / f"{name}.yaml")[0].params > 0
    size = image_size if image_size <= MAX_TEST_SIZE else 32
    model = create_model(cfg.name, num_classes, in_channels, size, cfg.dropout, **cfg.options)
    train_step(model, num_classes, in_channels, size)


def test_every_users_md_architecture_has_a_preset() -> None:
    assert not set(USERS_MD_PRESETS) - set(PRESETS)
    assert all(preset_input(name) for name in PRESETS)


@pytest.mark.parametrize(
    ("preset", "reported"),
    [("mnist-logreg", 7_850), ("mnist-mlp2-relu", 55_000), ("mnist-mlp2-bn", 55_000), ("mnist-mlp3-bn", 51_000),
     ("cifar-vgg6", 179_000), ("cifar-inception4", 514_000), ("resnet9", 6_600_000)],
)
def test_parameter_counts_match_the_write_ups(preset: str, reported: int) -> None:
    count = model_preset_size(PRESET_DIR / f"{preset}.yaml")[0].params
    assert abs(count - reported) / reported < 0.03, f"{preset}: {count} vs {reported}"


def test_mac_counts_are_exact_for_simple_nets() -> None:
    assert count_macs(create_model("mlp", 10, 1, 28, hidden=[]), 1, 28) == 784 * 10
    small = create_model("convnet", 10, 1, 8, channels=[32, 64])
    assert count_macs(small, 1, 8) == 8 * 8 * 32 * 9 + 4 * 4 * 64 * 32 * 9 + 2 * 2 * 64 * 10


@pytest.mark.parametrize("name", [n for n in list_models() if n != "mlp"])
def test_too_small_input_names_the_minimum(name: str) -> None:
    with pytest.raises(ModelError, match=r"at least (\d+)x\1 pixels"):
        create_model(name, 10, 3, 2)


def test_torchvision_small_input_and_stride1_stages() -> None:
    with pytest.raises(ModelError, match="at least 32x32"):
        create_model("resnet18", 10, 3, 16)
    resnet = create_model("resnet18", 10, 3, 16, small_input=True, stride1_stages=1)
    feats = resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(resnet.conv1(torch.randn(1, 3, 16, 16))))))
    assert feats.shape[-1] == 4  # only layer3 and layer4 still halve
    effnet = create_model("efficientnet_v2_s", 10, 3, 40, small_input=True, stride1_stages=1)
    assert effnet.features(torch.randn(1, 3, 40, 40)).shape[-1] == 5
    with pytest.raises(ModelError, match="stride1_stages"):
        create_model("resnet18", 10, 3, 32, stride1_stages=4)


def test_residual_drop_keeps_torchvision_keys_and_scales_in_eval() -> None:
    plain = create_model("resnet18", 10, 3, 32, small_input=True)
    shaken = create_model("resnet18", 10, 3, 32, small_input=True, residual_drop="shakedrop", drop_rate=0.5)
    assert list(plain.state_dict()) == list(shaken.state_dict())
    drop = ShakeDrop(0.25).eval()
    assert torch.allclose(drop(torch.ones(2, 3)), torch.full((2, 3), 0.75))
    with pytest.raises(ModelError, match="model.options.residual_drop"):
        create_model("resnet18", 10, 3, 32, residual_drop="shake")


def test_speedrun_whitening_from_data_decorrelates_patches() -> None:
    torch.manual_seed(0)
    mixing = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.5, 0.5, 0.7]])
    images = torch.einsum("dc,nchw->ndhw", mixing, torch.randn(64, 3, 16, 16))
    model = create_model("speedrun", 10, 3, 16)
    model.init_from_data(images)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(images, model.whiten.weight[:12])
    flat = out.permute(1, 0, 2, 3).reshape(12, -1)
    cov = flat @ flat.T / flat.shape[1]
    assert torch.allclose(cov, torch.eye(12), atol=0.05)
    assert not model.whiten.weight.requires_grad


# ---------------------------------------------------------------- weights


def small_convnet(num_classes: int, channels: tuple[int, ...] = (8, 16)) -> torch.nn.Module:
    """A tiny convnet for weight-file tests."""
    return create_model("convnet", num_classes, 3, 16, channels=list(channels))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_with_another_head(tmp_path: Path, suffix: str) -> None:
    source = small_convnet(10)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    model = small_convnet(4)
    assert load_pretrained(model, str(path), num_classes=4) == ["head.weight", "head.bias"]
    assert torch.equal(model.features[0].weight, source.features[0].weight)
    assert model.head.weight.shape == (4, 16 * 4 * 4)
    same_head = small_convnet(10)
    assert load_pretrained(same_head, str(path), num_classes=10) == []
    assert torch.equal(same_head.head.weight, source.head.weight)
    assert load_pretrained(small_convnet(4), str(path), num_classes=4) == ["head.weight", "head.bias"]


def test_weights_of_another_architecture_name_the_first_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file(small_convnet(10, (8, 32)).state_dict(), str(path))
    with pytest.raises(ModelError, match=r"'features.4.weight' has shape \(32, 8, 3, 3\) in the file but "
                                         r"\(16, 8, 3, 3\) in the model"):
        load_pretrained(small_convnet(10), str(path), num_classes=10)
    save_file(small_convnet(10, (8,)).state_dict(), str(path))
    with pytest.raises(ModelError, match=r"'features.4.weight' \(shape \(16, 8, 3, 3\)\) is missing"):
        load_pretrained(small_convnet(10), str(path), num_classes=10)
    with pytest.raises(ModelError, match="does not exist"):
        load_pretrained(small_convnet(10), str(tmp_path / "nope.pth"), num_classes=10)


def test_torchvision_weights_name_from_hub_cache_and_offline_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.models import EfficientNet_B0_Weights

    old_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        weights = EfficientNet_B0_Weights.IMAGENET1K_V1
        cached = tmp_path / "hub" / "checkpoints" / Path(weights.url).name
        cached.parent.mkdir(parents=True)
        imagenet = create_model("efficientnet_b0", 1000, 3, 224)
        torch.save(imagenet.state_dict(), cached)
        model = create_model("efficientnet_b0", 7, 3, 32)
        assert load_pretrained(model, "IMAGENET1K_V1", num_classes=7) == ["classifier.1.weight", "classifier.1.bias"]
        assert torch.equal(model.features[1][0].block[0][0].weight, imagenet.features[1][0].block[0][0].weight)
        # a download that fails (not IMGCLS_OFFLINE, which refuses before trying): an unreachable proxy
        monkeypatch.delenv("IMGCLS_OFFLINE", raising=False)
        for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(var, "http://127.0.0.1:9")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        with pytest.raises(ModelError, match=r"could not download.*Put the file at .*hub/checkpoints/resnet18-"):
            load_pretrained(create_model("resnet18", 7, 3, 32), "ResNet18_Weights.IMAGENET1K_V1", num_classes=7)
    finally:
        torch.hub.set_dir(old_dir)


def test_freezing_the_backbone_leaves_the_head_trainable() -> None:
    model = create_model("resnet18", 5, 3, 32, small_input=True)
    assert head_parameter_names(model) == ["fc.weight", "fc.bias"]
    set_backbone_trainable(model, False)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    train_step(model, 5, 3, 32)
    set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())


def test_bad_option_values_raise_model_errors() -> None:
    with pytest.raises(ModelError, match=r"model.options.pool\[0\]: 'maxx' is not allowed.*did you mean `max`"):
        create_model("convnet", 10, 3, 32, pool="maxx")
    with pytest.raises(ModelError, match="model.options.activation: unknown activation 'rleu'"):
        create_model("mlp", 10, 1, 28, activation="rleu")
    with pytest.raises(ModelError, match="model.options.kernel: needs 2 entries"):
        create_model("convnet", 10, 3, 32, channels=[8, 8], kernel=[3])
    with pytest.raises(ModelError, match="cannot be built with options channels=8"):
        create_model("convnet", 10, 3, 32, channels=8)


def test_safetensors_weights_from_a_wrapped_model_load(tmp_path):
    from safetensors.torch import save_file

    from engine.models import create_model, load_pretrained

    source = create_model("resnet18", 10, 3, 32, 0.0, small_input=True)
    wrapped = {f"module.{k}": v.contiguous() for k, v in source.state_dict().items()}
    save_file(wrapped, str(tmp_path / "ddp.safetensors"))
    target = create_model("resnet18", 10, 3, 32, 0.0, small_input=True)
    load_pretrained(target, str(tmp_path / "ddp.safetensors"), num_classes=10)
    assert torch.equal(target.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])


@pytest.mark.parametrize("name", PRESETS)
def test_macs_equal_torchs_flop_counter(name: str) -> None:
    """count_macs counts convolutions and linear layers only (no dispatch mode, so no torch._dynamo import at every
    start); torch's FlopCounterMode, which counts every op with a formula, gives the same total on every preset."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg = load_preset(name)
    num_classes, in_channels, image_size = preset_input(name)
    size = image_size if image_size <= MAX_TEST_SIZE else 32
    model = create_model(cfg.name, num_classes, in_channels, size, cfg.dropout, **cfg.options).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, in_channels, size, size))
    assert count_macs(model, in_channels, size) == counter.get_total_flops() // 2
