"""The model zoo: a registry of builders, parameter/MAC counts, pretrained loading and backbone freezing."""

from __future__ import annotations

# Importing the builder modules registers their models.
from engine.models import convnet as _convnet  # noqa: F401
from engine.models.measure import count_macs, count_params
from engine.models.registry import (
    build_model,
    check_model_config,
    create_model,
    list_models,
    model_option_defaults,
    model_option_names,
    register_model,
)

__all__ = [
    "build_model",
    "check_model_config",
    "count_macs",
    "count_params",
    "create_model",
    "list_models",
    "model_option_defaults",
    "model_option_names",
    "register_model",
]
