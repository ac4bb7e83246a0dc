"""`data stats` through Typer's CliRunner on the embedded digits and a generated image folder."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from console.cli_data import app

runner = CliRunner()


def test_stats_on_the_digits_preset():
    result = runner.invoke(app, ["stats", "digits"])
    assert result.exit_code == 0, result.output
    assert "10 classes" in result.output and "train mean: [0.3" in result.output
    total_row = next(line for line in result.output.splitlines() if "total" in line)
    assert sum(int(cell) for cell in total_row.replace("│", " ").split()[1:]) == 1797


def test_stats_json_with_override_and_yaml_file(tmp_path):
    root = tmp_path / "imgs"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((6, 6, 3), 50 * i, np.uint8)).save(root / name / f"{i}.png")
    preset = tmp_path / "mine.yaml"
    preset.write_text(f"source: folder\nroot: {root}\nval_fraction: 0.2\ntest_fraction: 0.2\n")
    result = runner.invoke(app, ["stats", str(preset), "--json", "--set", "data.image_size=4"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["classes"] == ["a", "b"] and payload["image_size"] == 4 and payload["channels"] == 3
    assert [sum(payload["counts"][s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert len(payload["mean"]) == 3


def test_stats_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["stats", "no-such-preset"])
    assert result.exit_code == 2 and "no data preset" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: folder\nroot: /nonexistent/imgs\n")
    result = runner.invoke(app, ["stats", str(bad)])
    assert result.exit_code == 2 and "/nonexistent/imgs" in result.output


def test_stats_of_an_experiment_uses_its_data_section():
    import json

    plain = json.loads(runner.invoke(app, ["stats", "quickstart", "--json"]).stdout)
    result = runner.invoke(app, ["stats", "quickstart", "--set", "val_fraction=0.3", "--json"])
    assert result.exit_code == 0, result.output
    wider = json.loads(result.stdout)
    assert plain["source"] == "digits" and sum(wider["counts"]["val"]) > sum(plain["counts"]["val"])


def test_cache_lists_and_clears_decoded_tables(tmp_path):
    root = tmp_path / "imgs"
    for label in ("ant", "bee"):
        (root / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((6, 6, 3), 40 * i, dtype=np.uint8)).save(root / label / f"{i}.png")
    assert runner.invoke(app, ["stats", "folder-40px", "--set", f"root={root}", "--json"]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["cache", "--json"]).stdout)
    (entry,) = listed["entries"]
    assert entry["source"] == "folder" and entry["root"] == str(root) and entry["images"] == 8
    assert entry["shape"] == [3, 40, 40] and entry["bytes"] > 8 * 3 * 40 * 40
    kept = json.loads(runner.invoke(app, ["cache", "--clear", "--unused-for", "1", "--json"]).stdout)
    assert kept["entries"] == [] and (tmp_path / "data" / "cache" / f"{entry['key']}.pt").is_file()
    cleared = json.loads(runner.invoke(app, ["cache", "--clear", "--json"]).stdout)
    assert [e["key"] for e in cleared["entries"]] == [entry["key"]]
    assert not list((tmp_path / "data" / "cache").iterdir())


def test_an_entry_without_sidecar_gets_one_when_used(tmp_path):
    import os

    root = tmp_path / "imgs"
    for label in ("ant", "bee"):
        (root / label).mkdir(parents=True)
        Image.fromarray(np.zeros((6, 6, 3), dtype=np.uint8)).save(root / label / "0.png")
    args = ["stats", "folder-40px", "--set", f"root={root}", "--json"]
    assert runner.invoke(app, args).exit_code == 0
    (sidecar,) = (tmp_path / "data" / "cache").glob("*.json")
    sidecar.unlink()  # as written before sidecars existed, and long ago
    old = sidecar.with_suffix(".pt")
    os.utime(old, (old.stat().st_atime - 40 * 86400, old.stat().st_mtime - 40 * 86400))
    assert runner.invoke(app, args).exit_code == 0  # a cache hit: the entry is in use
    recent = json.loads(runner.invoke(app, ["cache", "--unused-for", "30", "--json"]).stdout)
    assert recent["entries"] == [] and sidecar.is_file()
