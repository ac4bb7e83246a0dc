"""`sweep` as a preset kind: listed, shown, validated, exported with the presets it names, imported (bundled presets
kept, imported or renamed, never replacing the receiver's) and then run by name; bad bundles refused in one line
before anything is written. Real files, real CLI, a real one-trial sweep."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from console.cli import app
from engine.presets import list_presets, resolve_experiment, resolved_document
from tests.conftest import write

SPEC = """\
description: my schedule against the built-in cosine, two learning rates
base: my-digits
params:
  schedule: [my-cosine, cosine]
  optim.lr: {choices: [0.05, 0.1]}
sampler: grid
pruner: none
"""


def invoke(*args: str) -> object:
    """The CLI in-process; its result (exit_code, stdout, stderr)."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def files(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> text)."""
    return {p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()}


def sender_presets(user: Path) -> None:
    """A sweep over the sender's own experiment and schedule preset (neither exists where it is received)."""
    write(user / "experiment" / "my-digits.yaml", "base: quickstart\nmodel: {dropout: 0.25}\n")
    write(user / "schedule" / "my-cosine.yaml", "description: cosine to a floor\nname: cosine\nmin_lr: 0.001\n")
    write(user / "sweep" / "shared-sched.yaml", SPEC)


def test_sweeps_are_listed_shown_and_validated_like_other_presets(isolated_dirs: Path) -> None:
    builtin = [info for info in list_presets("sweep") if info.name == "quickstart-lr-batch"]
    assert builtin and builtin[0].origin == "builtin" and "learning rate x batch size" in builtin[0].description
    assert list_presets()[-1].kind == "sweep"  # listed after the experiments, with every other kind
    listed = invoke("presets", "list", "sweep")
    assert listed.exit_code == 0 and "quickstart-lr-batch" in listed.stdout and "sweep" in listed.stdout
    shown = invoke("presets", "show", "quickstart-lr-batch")
    assert shown.exit_code == 0 and "optim.lr" in shown.stdout and "# sweep preset" in shown.stderr
    resolved = yaml.safe_load(invoke("presets", "show", "quickstart-lr-batch", "--resolved").stdout)
    assert resolved["trials"] == 6 and resolved["sampler"] == "grid" and resolved["seed"] is None
    assert invoke("presets", "show", "quickstart-lr-batch", "--kind", "experiment").exit_code == 2


def test_a_shared_sweep_carries_its_presets_and_runs_where_it_is_imported(isolated_dirs: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sender_presets(isolated_dirs / "user-presets")
    out = isolated_dirs / "shared" / "shared-sched.yaml"
    exported = invoke("presets", "export", "shared-sched", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    bundle = yaml.safe_load(out.read_text())["bundle"]
    assert bundle["experiment"]["my-digits"]["model"]["dropout"] == 0.25  # the base, fully resolved
    assert set(bundle["schedule"]) == {"my-cosine", "cosine"} and bundle["schedule"]["my-cosine"]["min_lr"] == 0.001
    assert "presets import shared-sched.yaml" in out.read_text()
    ok = invoke("presets", "validate", str(out))  # checked with its bundle standing in for missing presets
    assert ok.exit_code == 0 and "valid sweep preset" in ok.stderr
    assert yaml.safe_load(invoke("presets", "show", str(out), "--resolved").stdout)["trials"] == 4  # a file's kind

    receiver = isolated_dirs / "receiver"
    monkeypatch.setenv("IMGCLS_PRESETS_DIR", str(receiver))
    imported = invoke("presets", "import", str(out))
    assert imported.exit_code == 0, imported.output
    assert "experiment preset my-digits: imported" in imported.stderr
    assert "schedule preset cosine: the same as yours, nothing copied" in imported.stderr
    assert sorted(files(receiver)) == ["experiment/my-digits.yaml", "schedule/my-cosine.yaml",
                                       "sweep/shared-sched.yaml"]
    assert "bundle" not in yaml.safe_load((receiver / "sweep" / "shared-sched.yaml").read_text())

    ran = invoke("sweep", "run", "shared-sched", "--trials", "1", "--set", "train.epochs=1", "data.limit=300",
                 "--json", "--quiet")
    assert ran.exit_code == 0, ran.output
    row = json.loads(ran.stdout)["ranked"][0]
    config = yaml.safe_load((Path(row["run_dir"]) / "config.yaml").read_text())
    assert row["state"] == "complete" and config["model"]["dropout"] == 0.25  # the sender's base experiment
    expected_floor = 0.001 if row["params"]["schedule"] == "my-cosine" else 0.0
    assert config["schedule"]["min_lr"] == expected_floor


def test_a_preset_that_differs_from_the_receivers_is_imported_beside_it(isolated_dirs: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    base = resolved_document(resolve_experiment("quickstart", ["model.dropout=0.3"]))
    shared = write(isolated_dirs / "lr.yaml", yaml.safe_dump({
        "base": "my-digits", "params": {"optim.lr": {"choices": [0.05, 0.1]}}, "sampler": "grid",
        "bundle": {"schema_version": 1, "experiment": {"my-digits": base}}}))
    theirs = write(isolated_dirs / "user-presets" / "experiment" / "my-digits.yaml", "base: quickstart\n")
    before = theirs.read_text()
    first = invoke("presets", "import", str(shared))
    assert first.exit_code == 0, first.output
    assert "differs from yours, imported as lr-my-digits" in first.stderr
    assert theirs.read_text() == before  # nothing of the receiver's is replaced
    spec = yaml.safe_load((isolated_dirs / "user-presets" / "sweep" / "lr.yaml").read_text())
    assert spec["base"] == "lr-my-digits" and resolve_experiment("lr-my-digits").model.dropout == 0.3
    again = invoke("presets", "import", str(shared))
    assert again.exit_code == 2 and "exists; pass --overwrite" in again.stderr
    again = invoke("presets", "import", str(shared), "--overwrite")
    assert again.exit_code == 0 and "the same as your lr-my-digits" in again.stderr


@pytest.mark.parametrize(("change", "says"), [
    (lambda doc: doc["bundle"]["experiment"]["my-digits"]["optim"].update(lr=-1),
     "bundle.experiment.my-digits.optim.lr: must be positive"),
    (lambda doc: doc["bundle"].update(experimnt=doc["bundle"].pop("experiment")),
     "bundle.experimnt: not a preset kind (did you mean `experiment`?)"),
    (lambda doc: doc["params"]["optim.lr"].update(choices=[0.05, -5]), "params.optim.lr: -5: must be positive"),
    (lambda doc: doc.update(bundle=[1, 2]), "bundle: expected a mapping of preset kinds"),
])
def test_a_bad_shared_sweep_is_one_line_naming_file_and_key_and_nothing_is_written(
        isolated_dirs: Path, change: object, says: str) -> None:
    document = {"base": "my-digits", "params": {"optim.lr": {"choices": [0.05, 0.1]}}, "sampler": "grid",
                "bundle": {"schema_version": 1, "experiment": {"my-digits": resolved_document(
                    resolve_experiment("quickstart"))}}}
    change(document)  # type: ignore[operator]
    bad = write(isolated_dirs / "bad.yaml", yaml.safe_dump(document))
    for command in (["presets", "import", str(bad)], ["presets", "validate", str(bad)]):
        result = invoke(*command)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: {bad}: ") and says in lines[0]
    assert not (isolated_dirs / "user-presets").exists()


def test_a_sweep_without_bundle_is_copied_as_written_and_unknown_names_say_so(isolated_dirs: Path) -> None:
    plain = write(isolated_dirs / "mine.yaml", "# my lr search\nbase: quickstart\nparams:\n  optim.lr: [0.05, 0.1]\n")
    result = invoke("presets", "import", str(plain), "--kind", "sweep")
    assert result.exit_code == 0 and "sweep run mine" in result.stderr
    assert (isolated_dirs / "user-presets" / "sweep" / "mine.yaml").read_text() == plain.read_text()
    missing = invoke("presets", "export", "no-such", "--out", "-")
    assert missing.exit_code == 2 and "nor an experiment or sweep preset" in missing.stderr


def test_the_presets_screen_lists_shows_and_validates_a_sweep(isolated_dirs: Path) -> None:
    from console.app import create_app
    from console.screens.presets import PresetsScreen
    from tests.ui.test_presets_screen import shown, text_of, validate

    async def main() -> None:
        app = create_app(isolated_dirs / "runs", mode="presets")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await shown(app, pilot, "sweep", "quickstart-lr-batch")
            assert isinstance(screen, PresetsScreen)
            assert "optim.lr" in text_of(screen.query_one("#presets-yaml"))
            assert "sweep/quickstart-lr-batch" in text_of(screen.query_one("#presets-info"))
            assert (await validate(screen, pilot)).startswith("OK") and "valid sweep preset" in screen.last_result

    asyncio.run(main())
