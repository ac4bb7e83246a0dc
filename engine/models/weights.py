"""Pretrained weights (torchvision names or local files), head detection and backbone freezing."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from engine.errors import ModelError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class ShapeMismatch(ModelError):
    """A tensor of the weights has another shape than the model's; `hinted` when the message names a way out."""

    def __init__(self, message: str, *, hinted: bool) -> None:
        super().__init__(message)
        self.hinted = hinted


def head_name(model: nn.Module) -> str:
    """Module path of the classifier head: the builder's mark, else the last nn.Linear."""
    name = getattr(model, "head_name", None)
    if isinstance(name, str):
        return name
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ModelError(f"cannot find the classifier head of {type(model).__name__} (no nn.Linear)")
    return linear[-1]


def _in_head(key: str, head: str) -> bool:
    return key == head or key.startswith(head + ".")


def head_parameter_names(model: nn.Module) -> list[str]:
    """Names of the head's parameters (what stays trainable when the backbone is frozen)."""
    head = head_name(model)
    return [n for n, _ in model.named_parameters() if _in_head(n, head)]


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (False) or unfreeze (True) every parameter outside the head; the head stays trainable."""
    head = head_name(model)
    for name, param in model.named_parameters():
        param.requires_grad_(True if _in_head(name, head) else trainable)


# ---------------------------------------------------------------- loading


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors or torch file (weights only; nested 'state_dict'/'model' unwrapped)."""
    from engine.checkpoint import read_verified
    from engine.safe_load import load_safetensors, load_torch_values
    from engine.errors import CheckpointError

    if not path.is_file():
        raise ModelError(f"model.pretrained: weights file {path} does not exist")
    try:
        data = read_verified(path)  # a file of one of our checkpoints is checked against its sha256 record
        if path.suffix == ".safetensors":
            state: object = load_safetensors(data, path)
        else:
            state = load_torch_values(data, path)
    except CheckpointError as exc:  # damaged, not what its name says, or pickled code: unusable here
        raise ModelError(f"model.pretrained: {exc}") from None
    for key in ("state_dict", "model", "model_state_dict", "ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"model.pretrained: {path} does not hold a state dict of tensors")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}


def _torchvision_weights(model: nn.Module, spec: str) -> object:
    """Resolve 'ResNet18_Weights.IMAGENET1K_V1' or a bare 'IMAGENET1K_V1' (for the model's architecture)."""
    from torchvision.models import get_model_weights, get_weight

    arch = getattr(model, "torchvision_arch", None)
    if "." in spec:
        try:
            weights = get_weight(spec)
        except (ValueError, KeyError, AttributeError) as exc:
            raise ModelError(f"model.pretrained: unknown torchvision weights {spec!r}: {exc}") from exc
        if arch is not None and type(weights) is not get_model_weights(arch):  # refused before any download
            raise ModelError(f"model.pretrained: {spec} are weights for another architecture than {arch}; "
                             f"use {get_model_weights(arch).__name__}.<name> (or just the name, e.g. IMAGENET1K_V1)")
        return weights
    if arch is None:
        raise ModelError(
            f"model.pretrained: {spec!r} is neither a file nor a full torchvision weights name; "
            "this model has no torchvision weights, pass a local .safetensors/.pth file"
        )
    enum = get_model_weights(arch)
    try:
        return enum[spec] if spec != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ", ".join(w.name for w in enum)
        raise ModelError(f"model.pretrained: {arch} has no weights {spec!r}; available: {names}") from None


def _hub_file(weights: object) -> dict[str, torch.Tensor]:
    """The torchvision checkpoint from the torch hub cache, downloaded when missing (clear error offline).

    With `IMGCLS_OFFLINE` set, a missing file is an error at once: no download is tried."""
    from engine.data.paths import offline

    url: str = weights.url  # type: ignore[attr-defined]
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    target = folder / os.path.basename(url)
    if not target.is_file() and offline():
        raise ModelError(f"model.pretrained: {weights} is not in the torch hub cache and downloads are off "
                         f"(IMGCLS_OFFLINE is set): put {target.name} (from {url}) in {folder}, or set "
                         "model.pretrained to a local .safetensors/.pth file")
    if not target.is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(target), progress=False)
        except Exception as exc:  # no network, proxy, disk: all end the same way for the user
            target.unlink(missing_ok=True)
            raise ModelError(
                f"model.pretrained: could not download {weights} from {url} ({type(exc).__name__}: {exc}). "
                f"Offline? Put the file at {target} (file name {target.name}, directory {folder}), "
                "or set model.pretrained to a local .safetensors/.pth file"
            ) from exc
    return _read_file(target)


def _check_head(model: nn.Module, head: str, num_classes: int) -> None:
    """The head must already be sized for `num_classes` (builders replace it before weights are loaded)."""
    linears = [m for m in model.get_submodule(head).modules() if isinstance(m, nn.Linear)]
    if linears and linears[-1].out_features != num_classes:
        raise ModelError(
            f"model.pretrained: the model's head has {linears[-1].out_features} outputs, not {num_classes} classes"
        )


def _is_file_spec(spec: str) -> bool:
    return spec.endswith(WEIGHT_SUFFIXES) or os.sep in spec or "/" in spec or Path(spec).is_file()


def _shape_hint(source: torch.Tensor, target: torch.Tensor, *, first_conv: bool) -> str:
    """The way out when a convolution's shape differs: only its kernel size (a small-input stem against ImageNet
    weights), or the input channels of the first one (gray images against RGB weights, or the reverse)."""
    if source.ndim != 4 or target.ndim != 4:
        return ""
    if source.shape[:2] == target.shape[:2] and source.shape[2:] != target.shape[2:]:
        return (f"; the file's kernel is {source.shape[-1]}x{source.shape[-1]}: to keep those stem weights with a "
                f"small-input model set model.options.stem_kernel={source.shape[-1]} (its stride stays 1)")
    if first_conv and source.shape[0] == target.shape[0] and source.shape[2:] == target.shape[2:]:
        return (f"; the file's weights take {source.shape[1]}-channel images and the data has {target.shape[1]} "
                f"channels: --set data.channels={source.shape[1]} converts the images (no adapter maps the weights)")
    return ""


def load_pretrained(model: nn.Module, spec: str, *, num_classes: int, replace_head: bool = False) -> list[str]:
    """Load weights into `model`; head tensors of another shape (every head tensor with `replace_head`: the
    weights were trained on other classes) keep their fresh initialisation, and their keys are returned."""
    state = _read_file(Path(spec).expanduser()) if _is_file_spec(spec) else _hub_file(_torchvision_weights(model, spec))
    head = head_name(model)
    _check_head(model, head, num_classes)
    own = model.state_dict()
    first_conv = next((k for k, v in own.items() if v.ndim == 4), None)
    kept: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, target in own.items():
        source = state.get(key)
        if _in_head(key, head) and (replace_head or source is None or source.shape != target.shape):
            skipped.append(key)
        elif source is None:
            if key.endswith("num_batches_tracked"):
                continue
            raise ModelError(
                f"model.pretrained: {spec} does not match the model: tensor {key!r} "
                f"(shape {tuple(target.shape)}) is missing from the file. Is it the same architecture?"
            )
        elif source.shape != target.shape:
            hint = _shape_hint(source, target, first_conv=key == first_conv)
            raise ShapeMismatch(
                f"model.pretrained: {spec} does not match the model: tensor {key!r} has shape "
                f"{tuple(source.shape)} in the file but {tuple(target.shape)} in the model{hint}", hinted=bool(hint)
            )
        else:
            kept[key] = source
    extra = [k for k in state if k not in own]
    if extra:
        raise ModelError(
            f"model.pretrained: {spec} does not match the model: tensor {extra[0]!r} "
            f"(shape {tuple(state[extra[0]].shape)}) in the file has no counterpart in the model"
        )
    if skipped and not kept:
        raise ModelError(f"model.pretrained: {spec}: every tensor of this model is its head ({', '.join(skipped)}), "
                         "which the new classes replace: nothing would be loaded (train it from scratch with "
                         "`imgcls-console train`)")
    model.load_state_dict(kept, strict=False)
    return skipped
