"""The config tree: defaults, unknown keys, wrong types, docs on every field."""

from __future__ import annotations

import dataclasses

import pytest

from engine import config as cfg
from engine.errors import ConfigError


def test_defaults_validate() -> None:
    config = cfg.from_dict({})
    assert config.optim.lr == 0.1 and config.data.source == "digits"


def test_unknown_key_names_file_dotted_key_and_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        cfg.from_dict({"optim": {"lrr": 0.1}}, "exp.yaml")
    message = str(info.value)
    assert "exp.yaml" in message and "optim.lrr" in message and "did you mean `lr`" in message


def test_nested_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.early_stop\.patiense.*patience"):
        cfg.from_dict({"train": {"early_stop": {"patiense": 3}}})


def test_wrong_type_names_key_value_and_type() -> None:
    with pytest.raises(ConfigError) as info:
        cfg.from_dict({"train": {"epochs": "ten"}}, "exp.yaml")
    assert "train.epochs" in str(info.value) and "'ten'" in str(info.value) and "int" in str(info.value)


def test_bool_is_not_an_int_and_int_widens_to_float() -> None:
    with pytest.raises(ConfigError):
        cfg.from_dict({"train": {"epochs": True}})
    assert cfg.from_dict({"optim": {"lr": 1}}).optim.lr == 1.0


def test_literal_choice_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean `cosine`"):
        cfg.from_dict({"schedule": {"name": "cosin"}})


def test_list_items_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"schedule\.milestones\[1\]"):
        cfg.from_dict({"schedule": {"name": "multistep", "milestones": [10, "x"]}})


def test_semantic_ranges() -> None:
    with pytest.raises(ConfigError, match="optim.lr"):
        cfg.from_dict({"optim": {"lr": -1.0}})
    with pytest.raises(ConfigError, match="data.fold"):
        cfg.from_dict({"data": {"folds": 3, "fold": 3}})


def test_every_field_is_documented() -> None:
    for dotted, _type, _default, doc in cfg.field_docs(cfg.ExperimentConfig):
        assert doc, f"{dotted} has no doc"


def test_round_trip() -> None:
    config = cfg.from_dict({"optim": {"name": "adam", "lr": 0.001}, "schedule": {"name": "multistep", "milestones": [3]}})
    assert cfg.from_dict(cfg.to_dict(config)) == config
    assert dataclasses.asdict(config)["optim"]["name"] == "adam"
