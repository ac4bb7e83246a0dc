"""Transfer learning across data sets: `finetune RUN` on other data and other classes, what it refuses and why,
and pretrained weights offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from console.cli import app
from trained import copy_run, train_template

runner = CliRunner()
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")  # moved by any forward pass in train mode


@pytest.fixture(scope="module")
def digits_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-epoch quickstart run on the digits (1 channel, 8x8, 10 classes), trained once."""
    return train_template(tmp_path_factory, "digits", "quickstart", ["train.epochs=1", "data.limit=300"])


@pytest.fixture
def digits_run(digits_template: Path, isolated_dirs: Path) -> Path:
    """This test's copy of the digits run, in its own runs folder."""
    return copy_run(digits_template, isolated_dirs / "runs")


def image_folder(root: Path, classes: tuple[str, ...], *, mode: str = "L", per_class: int = 8) -> Path:
    """A real image-folder data set: `root/<class>/<n>.png`, 8x8 pixels, a different mean level per class."""
    rng = np.random.default_rng(0)
    channels = {"L": (8, 8), "RGB": (8, 8, 3)}[mode]
    for level, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for n in range(per_class):
            pixels = np.clip(rng.normal(60 + 70 * level, 20, channels), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode).save(root / name / f"{n}.png")
    return root


def weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


FOLDER_DATA = ["--set", "data.source=folder", "--set", "train.batch_size=8", "--set", "train.epochs=1"]


def test_finetune_on_another_data_set_loads_the_backbone_and_replaces_the_head(digits_run: Path,
                                                                               tmp_path: Path) -> None:
    animals = image_folder(tmp_path / "animals", ("cat", "dog", "owl"))
    # a learning rate of 1e-12 leaves the loaded parameters as they were, to the last digit that matters
    result = runner.invoke(app, ["finetune", digits_run.name, *FOLDER_DATA, "--set", f"data.root={animals}",
                                 "--set", "optim.lr=1e-12", "--json"])
    assert result.exit_code == 0, result.output
    assert "new head for the 3 classes of this data (head.weight, head.bias)" in result.stderr
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    loaded = [e for e in events if e["type"] == "weights_loaded"]
    assert [e["replaced"] for e in loaded] == [["head.weight", "head.bias"]]
    source = weights(digits_run / "checkpoints/best/weights.safetensors")
    tuned = weights(run_dir / "checkpoints/last/weights.safetensors")
    assert source["head.weight"].shape == (10, 256) and tuned["head.weight"].shape == (3, 256)
    backbone = [k for k in source if not k.startswith("head.") and not k.endswith(BN_STATS)]
    assert len(backbone) >= 6
    for key in backbone:
        torch.testing.assert_close(tuned[key], source[key], rtol=0, atol=1e-6, msg=key)
    meta = json.loads((run_dir / "checkpoints/last/meta.json").read_text())
    assert meta["classes"] == ["cat", "dog", "owl"]


def test_loading_for_transfer_keeps_every_tensor_but_the_head(digits_run: Path) -> None:
    from engine.models import create_model
    from engine.transfer import load_start_weights

    spec = str(digits_run / "checkpoints/best/weights.safetensors")
    source = weights(Path(spec))
    model = create_model("convnet", 10, 1, 8, 0.1, channels=[32, 64], kernel=3, padding="same", pool="max",
                         batch_norm=True, activation="relu")
    fresh_head = model.head.weight.detach().clone()
    # the same number of classes but other names: the old head would map them wrongly, so it is replaced too
    replaced = load_start_weights(model, spec, [f"letter-{c}" for c in "abcdefghij"])
    assert replaced == ["head.weight", "head.bias"]
    state = model.state_dict()
    assert all(torch.equal(state[k], source[k]) for k in source if not k.startswith("head."))
    assert torch.equal(state["head.weight"], fresh_head) and not torch.equal(state["head.weight"], source["head.weight"])
    same = create_model("convnet", 10, 1, 8, 0.1, channels=[32, 64], kernel=3, padding="same", pool="max",
                        batch_norm=True, activation="relu")
    assert load_start_weights(same, spec, [str(d) for d in range(10)]) == []  # the same classes: all loaded
    assert torch.equal(same.state_dict()["head.weight"], source["head.weight"])


def test_finetune_refuses_another_channel_count_naming_the_way_out(digits_run: Path, tmp_path: Path) -> None:
    photos = image_folder(tmp_path / "photos", ("cat", "dog"), mode="RGB")
    asked = runner.invoke(app, ["finetune", digits_run.name, *FOLDER_DATA, "--set", f"data.root={photos}",
                                "--set", "data.channels=3"])
    assert asked.exit_code == 2
    line = asked.stderr.strip()
    assert "\n" not in line and "1-channel" in line and "--set data.channels=1" in line, line
    native = runner.invoke(app, ["finetune", digits_run.name, *FOLDER_DATA, "--set", f"data.root={photos}"])
    assert native.exit_code == 2
    errors = [line for line in native.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--set data.channels=1" in errors[0], native.stderr
    assert sorted(p.name for p in digits_run.parent.iterdir()) == [digits_run.name]  # no run folder left
    moved = runner.invoke(app, ["finetune", digits_run.name, *FOLDER_DATA, "--set", f"data.root={photos}",
                                "--set", "data.channels=1", "--json", "-q"])
    assert moved.exit_code == 0, moved.output  # the way out named works


def test_finetune_on_csv_data_without_its_files_names_the_keys_to_set(digits_run: Path) -> None:
    result = runner.invoke(app, ["finetune", digits_run.name, "--set", "data=csv-40px", "--set", "data.channels=1"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "--set data.root=DIR data.csv_file=FILE" in line, line
    assert sorted(p.name for p in digits_run.parent.iterdir()) == [digits_run.name]


def test_finetune_into_another_architecture_is_refused_naming_the_way_out(digits_run: Path) -> None:
    result = runner.invoke(app, ["finetune", digits_run.name, "--set", "model=mnist-logreg"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "model.name" in line and "imgcls-console train" in line, line


def test_offline_pretrained_weights_fail_before_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.errors import ModelError
    from engine.models import create_model, load_pretrained

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch" / "hub"))  # torch.hub.get_dir() (set_dir)
    monkeypatch.setenv("IMGCLS_OFFLINE", "1")
    tried: list[str] = []
    # torch's downloader (not ours) records any attempt instead of going to the network
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, *args, **kwargs: tried.append(url))
    model = create_model("resnet18", 10, 3, 32, 0.0)
    with pytest.raises(ModelError) as caught:
        load_pretrained(model, "IMAGENET1K_V1", num_classes=10)
    message = str(caught.value)
    assert tried == []
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert "\n" not in message and "IMGCLS_OFFLINE" in message and str(folder) in message, message
    assert "resnet18-f37072fd.pth" in message


def test_a_model_that_is_only_its_head_is_not_fine_tuned_onto_other_classes(tmp_path: Path) -> None:
    """Logistic regression is its head alone: onto other classes nothing would be loaded, so the fine-tune is
    refused (it said 'every other tensor loaded' and trained from scratch)."""
    from safetensors.torch import save_file

    from engine.errors import ModelError
    from engine.models import create_model, load_pretrained

    logreg = create_model("mlp", 10, 1, 8, 0.0, hidden=[])
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in logreg.state_dict().items()}, str(path))
    assert load_pretrained(create_model("mlp", 10, 1, 8, 0.0, hidden=[]), str(path), num_classes=10) == []
    with pytest.raises(ModelError, match="nothing would be loaded"):
        load_pretrained(create_model("mlp", 3, 1, 8, 0.0, hidden=[]), str(path), num_classes=3, replace_head=True)
