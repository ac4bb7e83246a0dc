"""Time to accuracy of a recipe preset, timed as airbench times it.

    python bench/recipes.py PRESET [--seeds 5] [--set KEY=VALUE ...] [--synthetic N] [--out DIR] [--append FILE]

In one process: a warm-up run first (seed 1000: torch.compile, cuDNN autotuning, the decoded-data cache), reported
apart; then one run per seed 0 .. N-1, each in a fresh run folder. Per run:

- test accuracy of the final weights with the preset's own TTA (`eval.tta`), and without it (the training's test);
- training seconds: the sum of the epochs' `train_s` (the engine waits for the device at the end of each epoch's
  steps), which is what airbench's CUDA-event timer covers: the steps, not validation, checkpoints or the TTA
  evaluation;
- wall seconds of the whole run (set-up, validation, checkpoints, test).

Reported: mean ± std (sample std over the seeds) of each, the warm-up run's seconds, the device (GPU name, driver),
torch version, the commit, the date and the exact command. `--out DIR` writes `results.json` and a copy of this
script's source beside it; `--append FILE` adds a Markdown section to FILE (BENCHMARKS.md).

`--synthetic N` trains on generated data of the preset's shape in its real on-disk format (CIFAR-10 batches, MNIST
idx files; N training images) in a temporary folder: for trying the script and the recipes without the data set
(accuracy then means nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.provenance import commit_label  # noqa: E402 - after the path

WARMUP_SEED = 1000


def _device() -> dict[str, Any]:
    """The accelerator: GPU name, count and driver (nvidia-smi), else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return {"device": f"cpu ({os.cpu_count()} cores)", "driver": None}
    driver = None
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, check=True).stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        pass
    return {"device": f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}", "driver": driver}


def synthetic_root(preset: str, overrides: list[str], count: int, folder: Path) -> list[str]:
    """Generated data of the preset's source in its on-disk format under `folder`; the overrides pointing at it."""
    from bench.synthetic import write_cifar10_like, write_mnist_like
    from engine.presets import resolve_experiment

    source = resolve_experiment(preset, overrides).data.source
    if source == "cifar10":
        write_cifar10_like(folder, train=count, test=max(count // 5, 100))
    elif source == "mnist":
        write_mnist_like(folder, train=count, test=max(count // 5, 100))
    else:
        raise SystemExit(f"--synthetic: no generator for data.source {source!r} (cifar10, mnist)")
    return [f"data.root={folder}"]


def one_run(preset: str, overrides: list[str], seed: int, runs: Path) -> dict[str, Any]:
    """Train the preset with this seed; its accuracies and seconds."""
    from engine.ensemble import evaluate_checkpoint
    from engine.members import EvalOptions, resolve_refs
    from engine.presets import resolve_experiment
    from engine.runner import start_run
    from engine.runs import epoch_rows

    config = resolve_experiment(preset, [*overrides, f"train.seed={seed}"])
    clock = time.perf_counter()
    status = start_run(config, runs)
    wall = time.perf_counter() - clock
    run_dir = Path(status["run_dir"])
    rows = epoch_rows(run_dir)
    (ref,), _ = resolve_refs(runs, [f"{run_dir}:last"])
    tta = evaluate_checkpoint(ref, EvalOptions(split="test"), plot=False)
    return {"seed": seed, "run": run_dir.name, "state": status["state"], "epochs": len(rows),
            "train_s": round(sum(float(r.get("train_s") or 0.0) for r in rows), 3), "wall_s": round(wall, 3),
            "test_acc": status.get("test_acc"), "tta": tta["tta"], "tta_test_acc": tta["accuracy"]}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(preset: str, runs: list[dict[str, Any]], warmup: dict[str, Any], command: str) -> dict[str, Any]:
    import torch

    stats = {key: _mean_std([float(r[key]) for r in runs if r[key] is not None])
             for key in ("tta_test_acc", "test_acc", "train_s", "wall_s")}
    return {"preset": preset, "seeds": len(runs), **_device(), "torch": torch.__version__,
            "python": platform.python_version(), "commit": commit_label(), "date": time.strftime("%Y-%m-%d"),
            "command": command, "warmup": warmup, "runs": runs,
            **{f"{key}_mean": round(mean, 5) for key, (mean, _) in stats.items()},
            **{f"{key}_std": round(std, 5) for key, (_, std) in stats.items()}}


def markdown(result: dict[str, Any]) -> str:
    """The section `--append` adds to BENCHMARKS.md."""
    def pm(key: str, scale: float = 1.0, digits: int = 2) -> str:
        return f"{result[f'{key}_mean'] * scale:.{digits}f} ± {result[f'{key}_std'] * scale:.{digits}f}"

    tta = result["runs"][0]["tta"] if result["runs"] else "-"
    return "\n".join([
        "", f"### Recipe `{result['preset']}`: {result['seeds']} seeds", "",
        f"{result['device']} (driver {result['driver'] or '-'}), torch {result['torch']}, Python {result['python']}, "
        f"commit `{result['commit']}`, {result['date']}. Command: `{result['command']}`", "",
        "| test acc (TTA " + tta + ") | test acc (no TTA) | training s | wall s | warm-up run: training s / wall s |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {pm('tta_test_acc', 100)} % | {pm('test_acc', 100)} % | {pm('train_s', digits=3)} | {pm('wall_s')} | "
        f"{result['warmup']['train_s']:.3f} / {result['warmup']['wall_s']:.2f} |", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--synthetic", type=int, default=None, metavar="N")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--append", type=Path, default=None, metavar="FILE")
    args = parser.parse_args()
    command = "python bench/recipes.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="bench-recipes-"))
    try:
        overrides = list(args.overrides)
        if args.synthetic:
            overrides += synthetic_root(args.preset, overrides, args.synthetic, work / "data")
        warmup = one_run(args.preset, overrides, WARMUP_SEED, work / "runs")
        print(f"warm-up: {warmup}", file=sys.stderr)
        runs = []
        for seed in range(args.seeds):
            runs.append(one_run(args.preset, overrides, seed, work / "runs"))
            print(f"seed {seed}: {runs[-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = summarize(args.preset, runs, warmup, command)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        shutil.copy2(__file__, args.out / "recipes.py")  # the source that made these numbers
    if args.append:
        with open(args.append, "a", encoding="utf-8") as handle:
            handle.write(markdown(result))


if __name__ == "__main__":
    main()
