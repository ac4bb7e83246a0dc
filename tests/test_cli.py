"""The CLI end to end: real subprocesses for train (stdout is only JSON), CliRunner for the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from console.cli import app
from console.fmt import fmt_count
from tests.conftest import write

runner = CliRunner()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real command in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "console.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One real quickstart run, shared by the tests that read it."""
    home = tmp_path_factory.mktemp("qs")
    result = cli("train", "quickstart", "--json", "--runs-dir", str(home / "runs"), cwd=home)
    assert result.returncode == 0, result.stderr
    return home, json.loads(result.stdout)


def test_train_quickstart_json_is_the_only_stdout(quickstart_run: tuple[Path, dict]) -> None:
    _home, summary = quickstart_run
    assert set(summary) >= {"run_dir", "state", "epochs", "best_val_acc", "test_acc", "params", "wall_s"}
    assert summary["state"] == "finished" and summary["test_acc"] >= 0.95
    run_dir = Path(summary["run_dir"])
    for name in ("config.yaml", "events.jsonl", "status.json", "checkpoints/last/weights.safetensors",
                 "checkpoints/last/state.pt", "checkpoints/best/state.pt", "checkpoints/best/meta.json"):
        assert (run_dir / name).exists(), name
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == list(range(1, 16))
    assert events[-1]["type"] == "run_end" and events[-1]["state"] == "finished"


def test_runs_list_and_show(quickstart_run: tuple[Path, dict]) -> None:
    home, summary = quickstart_run
    name = Path(summary["run_dir"]).name
    listed = runner.invoke(app, ["runs", "list", "--runs-dir", str(home / "runs")], terminal_width=200)
    assert listed.exit_code == 0 and name in listed.stdout and "finished" in listed.stdout
    shown = runner.invoke(app, ["runs", "show", name[:14], "--runs-dir", str(home / "runs")], terminal_width=200)
    assert shown.exit_code == 0 and "val acc" in shown.stdout and "label_smoothing" not in shown.stdout
    assert "epochs" in shown.stdout and "checkpoints: " in shown.stdout


def test_export_run_retrains_to_the_same_config(quickstart_run: tuple[Path, dict], tmp_path: Path) -> None:
    home, summary = quickstart_run
    out = tmp_path / "exported.yaml"
    result = runner.invoke(app, ["presets", "export", summary["run_dir"], "--out", str(out),
                                 "--runs-dir", str(home / "runs")])
    assert result.exit_code == 0, result.output
    retrain = cli("train", str(out), "--json", "--quiet", "--set", "train.epochs=15", "--runs-dir",
                  str(tmp_path / "runs"), cwd=tmp_path)
    assert retrain.returncode == 0, retrain.stderr
    again = json.loads(retrain.stdout)
    first = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())
    second = yaml.safe_load((Path(again["run_dir"]) / "config.yaml").read_text())
    assert first["content_hash"] == second["content_hash"] == yaml.safe_load(out.read_text())["content_hash"]
    assert again["test_acc"] == pytest.approx(summary["test_acc"])  # same seed, same config, same result


def test_validate_unknown_key_suggests(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "optim: {lrr: 0.1}\n")
    result = cli("presets", "validate", str(bad), cwd=tmp_path)
    assert result.returncode != 0
    assert "optim.lrr" in result.stderr and "did you mean `lr`" in result.stderr


def test_validate_refuses_python_tags_and_runs_nothing(tmp_path: Path) -> None:
    bad = write(tmp_path / "evil.yaml", 'optim: !!python/object/apply:os.system ["touch pwned"]\n')
    result = cli("presets", "validate", str(bad), cwd=tmp_path)
    assert result.returncode != 0 and "refused YAML tag" in result.stderr
    assert not (tmp_path / "pwned").exists()


def test_presets_list_show_import(tmp_path: Path) -> None:
    listed = runner.invoke(app, ["presets", "list", "experiment"], terminal_width=200)
    assert listed.exit_code == 0 and "quickstart" in listed.stdout
    shown = runner.invoke(app, ["presets", "show", "quickstart", "--resolved"])
    assert shown.exit_code == 0 and "label_smoothing" in shown.stdout
    source = write(tmp_path / "mine.yaml", "name: sgd\nlr: 0.02\n")
    imported = runner.invoke(app, ["presets", "import", str(source), "--kind", "optim"])
    assert imported.exit_code == 0, imported.output
    assert "mine" in runner.invoke(app, ["presets", "list", "optim"], terminal_width=200).stdout


def test_missing_preset_error_lists_available(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "quickstrat"])
    assert result.exit_code == 2 and "did you mean `quickstart`" in result.output


def test_model_presets_show_param_counts() -> None:
    result = runner.invoke(app, ["presets", "list", "model"], terminal_width=200)
    assert result.exit_code == 0 and "params" in result.stdout and "small-cnn" in result.stdout
    assert "21.5K" in result.stdout


def test_a_model_presets_size_is_counted_at_the_input_it_names(isolated_dirs: Path) -> None:
    """`sized_for` in the preset says what input its parameter count is for; a preset without one is counted at
    CIFAR-10's and marked; a bad one is a one-line error naming the file and key."""
    wide = isolated_dirs / "wide-mlp.yaml"
    wide.write_text("description: one hidden layer\nsized_for: {classes: 10, channels: 1, size: 28}\n"
                    "name: mlp\noptions: {hidden: [100]}\n")
    unsized = isolated_dirs / "unsized-mlp.yaml"
    unsized.write_text("name: mlp\noptions: {hidden: [100]}\n")
    for path in (wide, unsized):
        assert runner.invoke(app, ["presets", "import", str(path), "--kind", "model"]).exit_code == 0
    listed = runner.invoke(app, ["presets", "list", "model"], terminal_width=200).stdout
    rows = {line.split("│")[2].strip(): line.split("│")[5].strip() for line in listed.splitlines() if "│" in line}
    assert rows["wide-mlp"] == fmt_count(784 * 100 + 100 + 100 * 10 + 10)  # 28x28x1 in, 10 out
    assert rows["unsized-mlp"] == fmt_count(3 * 32 * 32 * 100 + 100 + 100 * 10 + 10) + "*"
    assert "* at 32 × 32 px, 3 channels, 10 classes (it names none)" in listed
    detected = runner.invoke(app, ["presets", "validate", str(wide)])  # sized_for: only a model says it
    assert detected.exit_code == 0 and "is a valid model preset" in detected.output
    bad = isolated_dirs / "bad-mlp.yaml"
    bad.write_text("name: mlp\nsized_for: {classes: 10, channels: 1, sise: 28}\n")
    result = runner.invoke(app, ["presets", "validate", str(bad), "--kind", "model"])
    assert result.exit_code == 2, result.output
    by_name = runner.invoke(app, ["presets", "validate", "wide-mlp"])  # a preset by name, as `presets show` takes it
    assert by_name.exit_code == 0 and "wide-mlp.yaml is a valid model preset" in by_name.output
    misspelt = runner.invoke(app, ["presets", "validate", "wide-mpl"])
    assert misspelt.exit_code == 2 and "no such file, and no preset named 'wide-mpl'" in misspelt.output
    assert f"{bad}: sized_for.sise: unknown key; keys are classes, channels, size (did you mean `size`?)" in \
        " ".join(result.output.split())


def test_unusable_runs_folder_and_brackets_in_messages_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file")
    result = runner.invoke(app, ["train", "quickstart", "--runs-dir", str(tmp_path / "taken")])
    assert result.exit_code == 2 and "is a file, not a folder" in result.output and "Traceback" not in result.output
    bracketed = runner.invoke(app, ["train", "quickstart", "--set", "schedule.milestones=[bold]"])
    assert bracketed.exit_code == 2 and "milestones=[bold]:" in bracketed.output  # not swallowed as rich markup


def test_a_file_in_a_folders_way_is_said_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.errors import RunError
    from engine.runs import ensure_folder

    taken = tmp_path / "taken"
    taken.write_text("a file")
    monkeypatch.setenv("IMGCLS_RUNS_DIR", str(taken))
    found = runner.invoke(app, ["lr-find", "quickstart", "--steps", "5000"])  # refused before its 5000 steps
    assert found.exit_code == 2 and "lr-find on" not in found.output, found.output
    assert f"runs folder {taken} is a file, not a folder (needed as a folder for {taken}/lr-find)" in found.output
    out = runner.invoke(app, ["lr-find", "quickstart", "--steps", "5000", "--out", str(taken / "x.json")])
    assert out.exit_code == 2 and f"--out folder {taken} is a file, not a folder; pass another --out" in out.output
    swept = runner.invoke(app, ["sweep", "run", "quickstart-lr-batch", "--trials", "1"])
    assert swept.exit_code == 2 and f"sweeps folder {taken} is a file" in swept.output
    assert "Errno" not in found.output + out.output + swept.output
    with pytest.raises(RunError, match="cannot be created"):
        ensure_folder(Path("/proc/no-such-folder"))
    from console.common import os_error_line

    with pytest.raises(OSError) as raised:
        (taken / "deeper" / "x").mkdir(parents=True)
    assert os_error_line(raised.value).startswith(f"{taken} is a file, not a folder")


def test_train_name_option_names_the_run_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "quickstart", "--name", "lr-sweep-a", "--json", "-q", "--set",
                                 "train.epochs=1", "--set", "data.limit=200", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    assert run_dir.name.startswith("lr-sweep-a-")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["experiment"] == "quickstart"  # what it was composed from, not its new name


def test_a_folder_that_is_not_a_run_is_named_as_such(isolated_dirs: Path) -> None:
    (isolated_dirs / "runs" / "emptyrun").mkdir(parents=True)
    group = isolated_dirs / "runs" / "grp-kfold-20260101-000000"
    group.mkdir()
    (group / "kfold.json").write_text("{}")
    from engine.errors import RunError
    from engine.runs import resolve_run

    for name in ("emptyrun", "runs/emptyrun"):
        with pytest.raises(RunError, match="emptyrun is not a run folder: it has no config.yaml"):
            resolve_run(isolated_dirs / "runs", name)
    with pytest.raises(RunError, match="is a k-fold group, not a run"):
        resolve_run(isolated_dirs / "runs", group.name)
    with pytest.raises(RunError, match="no run 'nosuch'"):
        resolve_run(isolated_dirs / "runs", "nosuch")


def test_help_reflows_docstrings_into_paragraphs() -> None:
    """A sentence of a command's docstring is not broken where its source line ended."""
    result = CliRunner().invoke(app, ["eval", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "a k-fold group's name evaluates each of its fold runs" in text
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert not any(line.endswith("k-fold group's") for line in lines)  # the source's line end is not one


def test_a_bad_tta_is_refused_before_anything_trains(isolated_dirs: Path) -> None:
    """eval.tta is used by the run's evaluations after training (and a k-fold's --tta after every fold): a bad one
    was accepted, trained for hours, then failed every evaluation."""
    trained = runner.invoke(app, ["train", "quickstart", "--set", "eval.tta=random:abc"])
    assert trained.exit_code == 2 and "eval.tta: 'random:abc'" in trained.output and "1 to 1000" in trained.output
    folds = runner.invoke(app, ["kfold", "quickstart", "--folds", "2", "--tta", "flip+bogus"])
    assert folds.exit_code == 2 and "--tta flip+bogus: unknown part 'bogus'" in folds.output
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())
    preset = isolated_dirs / "bad-tta.yaml"
    preset.write_text("base: quickstart\neval: {tta: 'random:0'}\n")
    validated = runner.invoke(app, ["presets", "validate", str(preset)])
    assert validated.exit_code == 2 and f"{preset}: eval.tta: 'random:0'" in validated.output


def test_quiet_keeps_the_warnings(isolated_dirs: Path) -> None:
    """--quiet drops progress, not what the user must know (a resume from an older checkpoint, a setting that
    cannot apply here)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("the warning used here is about running without CUDA")
    result = runner.invoke(app, ["train", "quickstart", "-q", "--set", "train.precision=bf16", "train.epochs=1",
                                 "data.limit=200"])
    assert result.exit_code == 0, result.output
    assert "warning: train.precision=bf16 needs CUDA" in result.output and "epoch   1" not in result.output


@pytest.mark.parametrize(("args", "said"), [
    (["--steps", "0"], "--steps 0: the test needs at least 5 steps"),
    (["--start-lr", "0"], "--start-lr 0.0: expected a positive learning rate"),
    (["--start-lr", "nan"], "--start-lr nan: expected a positive learning rate"),
    (["--end-lr", "inf"], "--end-lr inf: expected a positive learning rate"),
    (["--start-lr", "1", "--end-lr", "0.1"], "--end-lr 0.1: the ramp rises, so it must be above --start-lr 1"),
])
def test_lr_find_refuses_a_ramp_it_cannot_run_in_one_line(isolated_dirs: Path, args: list[str], said: str) -> None:
    result = runner.invoke(app, ["lr-find", "quickstart", *args])  # tracebacks before (IndexError, ZeroDivision…)
    assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output
    assert not (isolated_dirs / "runs").exists()  # nothing run, nothing written


def test_export_of_a_name_that_is_a_preset_and_a_run_exports_the_preset(isolated_dirs: Path) -> None:
    """`presets export quickstart` with quickstart runs about: the preset (as `schedule preview` takes it), said;
    the run by its folder's name; a run's export with a --set it cannot take is refused, nothing written."""
    import yaml

    trained = runner.invoke(app, ["train", "quickstart", "-q", "--json", "--set", "train.epochs=1", "data.limit=200"])
    run_dir = Path(json.loads(trained.stdout)["run_dir"])
    preset = runner.invoke(app, ["presets", "export", "quickstart", "--out", "-"])
    assert preset.exit_code == 0 and "the preset is exported" in preset.stderr
    assert yaml.safe_load(preset.stdout)["train"]["epochs"] == 15  # the preset's, not the run's 1
    ran = runner.invoke(app, ["presets", "export", run_dir.name, "--out", "-"])
    assert yaml.safe_load(ran.stdout)["train"]["epochs"] == 1
    bad = runner.invoke(app, ["presets", "export", run_dir.name, "--out", "bad.yaml", "--set", "model.name=mlp"])
    assert bad.exit_code == 2 and "model.options.channels" in bad.output and not Path("bad.yaml").exists()


def test_help_shows_no_value_after_a_flag() -> None:
    for command in (["--help"], ["train", "--help"], ["runs", "list", "--help"], ["sweep", "run", "--help"]):
        result = runner.invoke(app, command, terminal_width=100)
        assert result.exit_code == 0 and "--help" in result.output and "<bool>" not in result.output, result.output
    assert "<float>" in runner.invoke(app, ["lr-find", "--help"], terminal_width=100).output  # values still typed
