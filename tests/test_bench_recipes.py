"""The recipe benchmark (issue 11's CPU part): `bench/recipes.py` runs a preset over seeds on generated data of its
shape in the data set's real on-disk format, reports mean ± std with a warm-up run apart, keeps its source with its
results and appends its section to a BENCHMARKS file; and each speed recipe trains two epochs on such data. The
timings themselves need the GPU (BENCHMARKS.md); here the CPU, fp32, no compile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CPU = ["train.device=cpu", "train.compile=false", "train.precision=fp32", "train.epochs=2"]


def test_the_recipe_benchmark_reports_seeds_apart_from_its_warm_up(tmp_path: Path) -> None:
    out, ledger = tmp_path / "out", tmp_path / "BENCHMARKS.md"
    ledger.write_text("# Benchmarks\n")
    command = [sys.executable, str(REPO / "bench" / "recipes.py"), "cifar10-speedrun", "--seeds", "2",
               "--synthetic", "64", *(arg for key in CPU for arg in ("--set", key)), "--out", str(out),
               "--append", str(ledger)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "IMGCLS_DATA_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["preset"] == "cifar10-speedrun" and report["seeds"] == 2 and len(report["runs"]) == 2
    assert [run["seed"] for run in report["runs"]] == [0, 1] and report["warmup"]["seed"] == 1000
    for run in [*report["runs"], report["warmup"]]:
        assert run["state"] == "finished" and run["epochs"] == 2 and 0 < run["train_s"] < run["wall_s"]
        assert run["tta"] == "flip+shift:1" and 0 <= run["tta_test_acc"] <= 1  # the preset's own TTA
    assert report["train_s_std"] >= 0 and report["device"].startswith("cpu") and report["commit"]
    assert (out / "recipes.py").read_text() == (REPO / "bench" / "recipes.py").read_text()  # its source kept
    assert json.loads((out / "results.json").read_text()) == report
    section = ledger.read_text()
    assert "### Recipe `cifar10-speedrun`: 2 seeds" in section and "python bench/recipes.py cifar10-speedrun" in section
    assert " ± " in section and "warm-up run" in section


@pytest.mark.parametrize("preset", ["mnist-speedrun", "cifar10-resnet9"])
def test_each_speed_recipe_trains_two_epochs_on_data_of_its_shape(preset: str, isolated_dirs: Path) -> None:
    sys.path.insert(0, str(REPO))
    from bench.recipes import one_run, synthetic_root

    count = 1200 if preset == "mnist-speedrun" else 64  # mnist-speedrun drops partial batches of 512
    overrides = [*CPU, *synthetic_root(preset, CPU, count, isolated_dirs / "data-files")]
    run = one_run(preset, overrides, 0, isolated_dirs / "runs")
    assert run["state"] == "finished" and run["epochs"] == 2 and run["train_s"] > 0
