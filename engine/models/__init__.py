"""The model zoo: a registry of builders, parameter/MAC counts, pretrained loading and backbone freezing."""

from __future__ import annotations

# Importing the builder modules registers their models.
from engine.models import convnet, inception, mlp, resnets, speedrun, tv  # noqa: F401
from engine.models.measure import count_macs, count_params
from engine.models.registry import (
    check_model_config,
    create_model,
    list_models,
    model_option_defaults,
    model_option_names,
    register_model,
)
from engine.models.weights import head_parameter_names, load_pretrained, set_backbone_trainable

__all__ = [
    "check_model_config",
    "count_macs",
    "count_params",
    "create_model",
    "head_parameter_names",
    "list_models",
    "load_pretrained",
    "model_option_defaults",
    "model_option_names",
    "register_model",
    "set_backbone_trainable",
]
