"""Sweeps: the speed-up of several local workers, and the sweep machinery's own cost per trial.

    python bench/sweep.py [--workers 2] [--repeats 2] [--epochs 3] [--out sweep.json]

One 12-point grid over the digits quickstart (optim.lr x train.batch_size), run with one worker (in-process, as
`sweep run SPEC`) and with N workers (`sweep run SPEC --workers N`), alternately, `--repeats` times each, every
sweep in a fresh runs folder, all in this one run on this machine. Reported:

- wall seconds of each arrangement (median) and their ratio (N workers / one);
- per-trial overhead of the sweep machinery with one worker: the sweep's wall time, less the start of the
  process (until the first trial starts) and the sum of its trials' run wall times (status.json `wall_s`: setup,
  data, training, test), over the number of trials: study I/O, sampling, resolving the config, the run folder;
- worker start: with N workers, the seconds from launching `sweep run` to the first trial's start in the study
  (process start and imports, once per worker, not per trial).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.provenance import commit_label  # noqa: E402 - after the path

SPEC = """\
description: bench - a 12-point grid of the digits quickstart
base: quickstart
params:
  optim.lr: {choices: [0.01, 0.02, 0.05, 0.1]}
  train.batch_size: {choices: [32, 64, 128]}
sampler: grid
pruner: none
"""


def one_sweep(workers: int, epochs: int, folder: Path) -> dict[str, Any]:
    """Run the 12-trial sweep in a fresh runs folder; its wall time and the trials' own times."""
    import optuna

    from engine.sweep import open_named

    spec = folder / "bench-grid.yaml"
    spec.write_text(SPEC)
    runs = folder / "runs"
    env = {**os.environ, "IMGCLS_RUNS_DIR": str(runs)}
    command = [sys.executable, "-m", "console.cli", "sweep", "run", str(spec), "--set", f"train.epochs={epochs}",
               "--quiet", "--json"]
    if workers > 1:
        command += ["--workers", str(workers)]
    launched = time.time()
    clock = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - clock
    study, _, _ = open_named(runs, "bench-grid", None)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    run_walls = [json.loads((Path(t.user_attrs["run_dir"]) / "status.json").read_text())["wall_s"] for t in trials]
    first_start = min(t.datetime_start.timestamp() for t in trials)
    return {"workers": workers, "trials": len(trials), "wall_s": round(wall, 2),
            "sum_run_wall_s": round(sum(run_walls), 2), "first_trial_after_s": round(first_start - launched, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results: dict[int, list[dict[str, Any]]] = {1: [], args.workers: []}
    for repeat in range(args.repeats):
        for workers in (1, args.workers):
            with tempfile.TemporaryDirectory() as folder:
                result = one_sweep(workers, args.epochs, Path(folder))
            results[workers].append(result)
            print(f"repeat {repeat}: {workers} worker(s): {result}", file=sys.stderr)
    one, many = (statistics.median(r["wall_s"] for r in results[w]) for w in (1, args.workers))
    overhead = statistics.median((r["wall_s"] - r["first_trial_after_s"] - r["sum_run_wall_s"]) / r["trials"]
                                 for r in results[1])
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU",
        "python": platform.python_version(), "torch": metadata.version("torch"), "commit": commit_label(),
        "date": time.strftime("%Y-%m-%d"), "epochs": args.epochs, "trials": 12, "repeats": args.repeats,
        "one_worker_wall_s": one, f"{args.workers}_workers_wall_s": many, "ratio": round(many / one, 3),
        "overhead_per_trial_s": round(overhead, 3),
        "process_start_s": statistics.median(r["first_trial_after_s"] for r in results[1]),
        "worker_start_s": statistics.median(r["first_trial_after_s"] for r in results[args.workers]),
        "runs": results,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
