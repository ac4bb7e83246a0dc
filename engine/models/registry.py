"""The model registry: builders register under a name; configs are checked against their signatures."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch.nn as nn

from engine.errors import ConfigError, ModelError, did_you_mean

if TYPE_CHECKING:
    from engine.config import ModelConfig

# Arguments every builder takes before its own options.
COMMON_ARGS = ("num_classes", "in_channels", "image_size", "dropout")

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder `(num_classes, in_channels, image_size, dropout, **options)` under `name`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"model {name!r} is registered twice")
        params = list(inspect.signature(builder).parameters)
        if tuple(params[: len(COMMON_ARGS)]) != COMMON_ARGS:
            raise ValueError(f"builder of {name!r} must start with arguments {COMMON_ARGS}, got {params}")
        _BUILDERS[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_BUILDERS)


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _BUILDERS:
        raise ModelError(_unknown_model_message(name))
    return _BUILDERS[name]


def _unknown_model_message(name: str) -> str:
    return f"unknown model {name!r}{did_you_mean(name, _BUILDERS)}; available: {', '.join(list_models())}"


def model_option_names(name: str) -> list[str]:
    """The option keys the builder of `name` accepts (its keyword arguments after the common ones)."""
    params = inspect.signature(_builder(name)).parameters.values()
    return [
        p.name for p in params
        if p.name not in COMMON_ARGS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def model_option_defaults(name: str) -> dict[str, Any]:
    """The default value of every option of `name` (for `presets show` and docs)."""
    params = inspect.signature(_builder(name)).parameters
    return {key: params[key].default for key in model_option_names(name)}


def check_model_config(model: ModelConfig, source: str | None = None) -> None:
    """Raise ConfigError for an unknown model name or an option key its builder does not take."""
    prefix = f"{source}: " if source else ""
    if model.name not in _BUILDERS:
        raise ConfigError(f"{prefix}model.name: {_unknown_model_message(model.name)}")
    from engine.config import raise_problems

    allowed = model_option_names(model.name)
    raise_problems([f"{prefix}model.options.{key}: unknown option for model {model.name!r}"
                    f"{did_you_mean(str(key), allowed)}; options: {', '.join(allowed) or '(none)'}"
                    for key in model.options if key not in allowed], source)  # every one, not the first


def create_model(
    name: str, num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0, **options: Any
) -> nn.Module:
    """Build the registered model `name` for the given classes, channels and square input size."""
    builder = _builder(name)
    allowed = model_option_names(name)
    for key in options:
        if key not in allowed:
            raise ModelError(
                f"model.options.{key}: unknown option for model {name!r}{did_you_mean(str(key), allowed)}; "
                f"options: {', '.join(allowed) or '(none)'}"
            )
    if num_classes < 1:
        raise ModelError(f"num_classes must be at least 1, got {num_classes}")
    if in_channels not in (1, 3):
        raise ModelError(f"model {name!r}: in_channels must be 1 or 3, got {in_channels}")
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"model.dropout: must be in [0, 1), got {dropout}")
    try:
        return builder(num_classes, in_channels, image_size, dropout, **options)
    except (TypeError, ValueError) as exc:  # an option of the wrong type or shape reaching torch
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "defaults"
        raise ModelError(f"model {name!r} cannot be built with options {shown}: {exc}") from exc
