"""Presets: search order, composition, overrides, safe YAML, export/import, and every shipped preset validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine import presets
from engine.errors import ConfigError
from tests.conftest import write


def test_every_builtin_preset_validates() -> None:
    found = presets.list_presets()
    assert {p.kind for p in found} == set(presets.ALL_KINDS)
    for info in found:
        kind, _ = presets.validate_file(info.path, info.kind)
        assert kind == info.kind


def test_missing_preset_lists_available() -> None:
    with pytest.raises(ConfigError) as info:
        presets.find_preset("optim", "sgdd")
    assert "did you mean `sgd`" in str(info.value) and "adam" in str(info.value)


def test_unsafe_yaml_tag_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bad = write(tmp_path / "evil.yaml", f'optim: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match="refused YAML tag"):
        presets.validate_file(bad)
    assert not marker.exists()


def test_experiment_composes_presets_and_overrides(tmp_path: Path) -> None:
    exp = write(tmp_path / "exp.yaml", "data: {source: digits}\noptim: {preset: sgd-nesterov-wd, lr: 0.3}\n"
                                        "schedule: multistep-10\ntrain: {epochs: 3}\n")
    config = presets.resolve_experiment(str(exp), ["train.batch_size=16", "optim.momentum=0.5"])
    assert config.optim.lr == 0.3 and config.optim.nesterov is True and config.optim.momentum == 0.5
    assert config.schedule.milestones == [10] and config.train.batch_size == 16 and config.name == "exp"


def test_unknown_key_in_section_preset_names_that_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "user-presets"
    write(user / "optim" / "broken.yaml", "name: sgd\nlrr: 0.1\n")
    exp = write(tmp_path / "exp.yaml", "optim: broken\n")
    with pytest.raises(ConfigError) as info:
        presets.resolve_experiment(str(exp))
    assert "broken.yaml" in str(info.value) and "optim.lrr" in str(info.value)


def test_override_errors_name_the_override() -> None:
    with pytest.raises(ConfigError, match=r"--set optim\.lrr=0\.2.*did you mean `lr`"):
        presets.resolve_experiment("quickstart", ["optim.lrr=0.2"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        presets.resolve_experiment("quickstart", ["optim.lr"])


def test_base_experiment_chain_and_cycle(tmp_path: Path) -> None:
    user = tmp_path / "user-presets" / "experiment"
    write(user / "a.yaml", "base: quickstart\ntrain: {epochs: 2}\n")
    assert presets.resolve_experiment("a").train.epochs == 2
    assert presets.resolve_experiment("a").model.name == presets.resolve_experiment("quickstart").model.name
    write(user / "b.yaml", "base: c\n")
    write(user / "c.yaml", "base: b\n")
    with pytest.raises(ConfigError, match="cycle"):
        presets.resolve_experiment("b")


def test_user_folder_comes_before_builtin_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "user-presets" / "optim" / "sgd.yaml", "name: sgd\nlr: 0.7\n")
    assert presets.load_section_preset("optim", "sgd")["lr"] == 0.7
    assert [p.origin for p in presets.list_presets("optim") if p.name == "sgd"] == ["user, shadows built-in"]
    assert "optim preset 'sgd' is your" in caplog.text and "shadows the built-in one" in caplog.text


def test_export_is_self_contained_and_hash_is_stable(tmp_path: Path) -> None:
    config = presets.resolve_experiment("quickstart")
    text = presets.resolved_yaml(config)
    document = yaml.safe_load(text)
    assert document["schema_version"] == 1 and document["content_hash"].startswith("sha256:")
    exported = write(tmp_path / "out.yaml", text)
    again = presets.resolve_experiment(str(exported))
    assert presets.content_hash(presets.cfg.to_dict(again)) == document["content_hash"]


def test_import_refuses_to_shadow_builtin_silently(tmp_path: Path) -> None:
    source = write(tmp_path / "sgd.yaml", "name: sgd\nlr: 0.2\n")
    with pytest.raises(ConfigError, match="built-in"):
        presets.import_preset(source, kind="optim")
    target = presets.import_preset(source, kind="optim", name="my-sgd")
    assert target == tmp_path / "user-presets" / "optim" / "my-sgd.yaml"
    with pytest.raises(ConfigError, match="--overwrite"):
        presets.import_preset(source, kind="optim", name="my-sgd")
    bad = write(tmp_path / "bad.yaml", "name: sgd\nlrr: 0.2\n")
    with pytest.raises(ConfigError, match="lrr"):
        presets.import_preset(bad, kind="optim", name="bad")
    assert not (tmp_path / "user-presets" / "optim" / "bad.yaml").exists()


def test_section_by_preset_replaces_inherited_section(tmp_path: Path) -> None:
    user = tmp_path / "user-presets" / "experiment"
    write(user / "parent.yaml", "base: quickstart\nschedule: {name: multistep, milestones: [3]}\n")
    write(user / "child.yaml", "base: parent\nmodel: mnist-logreg\nschedule: cosine\n")
    write(user / "tweak.yaml", "base: parent\nschedule: {gamma: 0.5}\n")
    child = presets.resolve_experiment("child")
    assert child.name == "child" and child.model.name == "mlp" and child.schedule.milestones == []
    tweak = presets.resolve_experiment("tweak")
    assert tweak.schedule.milestones == [3] and tweak.schedule.gamma == 0.5  # plain fields merge


def test_override_switches_a_section_preset() -> None:
    config = presets.resolve_experiment("quickstart", ["model=mnist-logreg", "model.dropout=0.2",
                                                       "augment.preset=flip"])
    assert config.model.name == "mlp" and config.model.dropout == 0.2
    assert [op["op"] for op in config.augment.ops] == ["hflip"]
    with pytest.raises(ConfigError, match="no model preset named 'nope'"):
        presets.resolve_experiment("quickstart", ["model=nope"])


def test_kind_is_detected_from_fields_and_unknown_preset_names_its_file(tmp_path: Path) -> None:
    assert presets.validate_file(write(tmp_path / "o.yaml", "name: sgd\nlr: 0.1\n"))[0] == "optim"
    assert presets.validate_file(write(tmp_path / "d.yaml", "source: digits\nval_fraction: 0.2\n"))[0] == "data"
    with pytest.raises(ConfigError, match=r"dta: unknown key \(did you mean `data`\?\)"):
        presets.validate_file(write(tmp_path / "e.yaml", "dta: digits\n"))
    with pytest.raises(ConfigError, match=r"b\.yaml: data: no data preset named 'nosuchdata'"):
        presets.validate_file(write(tmp_path / "b.yaml", "data: nosuchdata\n"))


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    twice = write(tmp_path / "twice.yaml", "data: digits\noptim: sgd\ndata: mnist\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml: key 'data' appears twice \(lines 1 and 3\)"):
        presets.validate_file(twice)


def test_resolved_yaml_keeps_sections_in_blocks_and_short_values_on_a_line(tmp_path: Path) -> None:
    from engine.config import to_dict
    from engine.presets import resolve_experiment, resolved_yaml

    config = resolve_experiment("quickstart")
    text = resolved_yaml(config)
    assert "\ndata:\n  source: digits\n" in text  # a section in a block, not one wrapped flow mapping
    assert "    channels: [32, 64]\n" in text  # a short list of plain values on one line
    assert "\neval: {tta: none, combine: logits, use_ema: true}\n" in text  # a small mapping of plain values too
    again = resolve_experiment(str(write(tmp_path / "again.yaml", text)))  # the same config read back
    assert to_dict(again) == to_dict(config)


def test_a_yaml_syntax_error_is_one_line_with_the_file_line_and_column(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "data: {source: digits\n  x: 1\n")
    with pytest.raises(ConfigError) as caught:
        presets.resolve_experiment(str(bad))
    assert str(caught.value) == (f"{bad}:2:4: not valid YAML: expected ',' or '}}', but got ':' "
                                 "(in a flow mapping from line 1)")  # not PyYAML's copy of the text


def test_an_unknown_preset_name_suggests_the_close_one_or_says_where_the_names_are() -> None:
    with pytest.raises(ConfigError) as close:
        presets.resolve_experiment("quickstrat")
    assert str(close.value) == "no experiment preset named 'quickstrat' (did you mean `quickstart`?)"  # not 43 names
    with pytest.raises(ConfigError) as far:
        presets.resolve_experiment("zzz")
    assert str(far.value).endswith("to choose from: `imgcls-console presets list experiment` lists them")
    with pytest.raises(ConfigError, match=r"no optim preset named 'zzz'; available: .*sgd"):  # a few: listed
        presets.resolve_experiment("quickstart", ["optim=zzz"])


def test_a_section_swap_applies_before_the_fields_given_with_it_in_any_order() -> None:
    """`--set schedule.milestones=[2,3] --set schedule=multistep-10`: the milestones land on the swapped-in
    preset (the swap given last silently dropped them)."""
    for overrides in (["schedule.milestones=[2,3]", "schedule=multistep-10", "train.epochs=4"],
                      ["schedule=multistep-10", "schedule.milestones=[2,3]", "train.epochs=4"]):
        config = presets.resolve_experiment("quickstart", overrides)
        assert config.schedule.name == "multistep" and config.schedule.milestones == [2, 3], overrides
    later = presets.resolve_experiment("quickstart", ["model.dropout=0.3", "model=mnist-logreg", "model=small-cnn"])
    assert later.model.name == "convnet" and later.model.dropout == 0.3  # of two swaps, the later one wins


def test_a_relative_path_in_a_preset_file_is_taken_from_that_files_folder(isolated_dirs: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    shared = isolated_dirs / "team-presets"
    write(shared / "parent.yaml", "base: quickstart\nname: parent\ntrain: {epochs: 3}\n")
    write(shared / "models" / "thin.yaml", "name: convnet\noptions: {channels: [8, 16]}\n")
    child = write(shared / "child.yaml", "base: ./parent.yaml\nname: child\nmodel: models/thin.yaml\n")
    elsewhere = isolated_dirs / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the user runs it from another folder: nothing is looked for there first
    config = presets.resolve_experiment(str(child))
    assert (config.name, config.train.epochs, config.model.options["channels"]) == ("child", 3, [8, 16])
    write(shared / "broken.yaml", "base: ./missing.yaml\n")
    with pytest.raises(ConfigError, match=r"base: preset file ./missing.yaml does not exist \(looked in .*team-presets"
                                          r" and in the working directory\)"):
        presets.resolve_experiment(str(shared / "broken.yaml"))
