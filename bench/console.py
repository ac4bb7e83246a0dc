"""The console's costs: start-up, event-to-screen latency, key-press repaint while runs stream, training speed
of a run launched from the app vs headless, and memory with 1,000 run folders listed.

    python bench/console.py [--repeats 5] [--out console.json]

Each figure is measured in this one process tree, on this machine (CPU or GPU: the output says which).
`--repeats` is the number of app starts timed, and of (headless run, followed run) pairs, run alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STARTUP = """
import sys, time, asyncio
clock = time.perf_counter()
from console.app import create_app
async def main():
    app = create_app(sys.argv[1])
    async with app.run_test(size=(120, 40)) as pilot:  # entered once the first screen is shown
        print(time.perf_counter() - clock, 'torch' in sys.modules)
asyncio.run(main())
"""


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def startup(runs: Path, repeats: int) -> dict[str, Any]:
    """Seconds from a fresh interpreter to the first screen shown (headless driver), and whether torch loaded."""
    seconds, torch_loaded = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", STARTUP, str(runs)], capture_output=True, text=True, check=True)
        value, loaded = out.stdout.split()[-2:]
        seconds.append(float(value))
        torch_loaded.append(loaded == "True")
    return {"median_s": statistics.median(seconds), "all_s": seconds, "torch_imported": any(torch_loaded)}


async def _follow_latency(runs: Path, epochs: int, two_runs: bool) -> dict[str, Any]:
    """Launch run(s), follow them in Monitor; event latency (event written -> screen redrawn) and key repaint."""
    from console.app import create_app
    from console.run_model import RunModel
    from console.screens.monitor import MonitorScreen
    from engine.launch import launch_run
    from engine.presets import resolve_experiment

    config = resolve_experiment("quickstart", [f"train.epochs={epochs}", "train.log_every=5"])
    handles = [launch_run(config, runs) for _ in range(2 if two_runs else 1)]
    app = create_app(runs, mode="monitor")
    latencies: list[float] = []
    repaint: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        for handle in handles:
            app.monitor_run(handle.run_dir, handle)
        monitor = app.get_screen("monitor", MonitorScreen)
        original_apply, original_redraw = RunModel.apply, monitor.redraw
        pending: list[float] = []  # write times of the selected run's events not yet on screen

        def timed_apply(model: RunModel, event: Any) -> None:
            if model.run_dir == monitor.selected:
                pending.append(float(event["time"]))
            original_apply(model, event)

        def timed_redraw() -> None:
            original_redraw()
            now = time.time()
            latencies.extend(now - t for t in pending)
            pending.clear()

        RunModel.apply = timed_apply  # type: ignore[method-assign]
        monitor.redraw = timed_redraw  # type: ignore[method-assign]
        while any(h.poll() is None for h in handles):
            if two_runs:  # switch the selected run by key; time until its name is on screen
                up = len(repaint) % 2 == 0  # the second run is selected first: up, then down, ...
                target = handles[0 if up else 1].run_dir.name
                clock = time.perf_counter()
                await pilot.press("up" if up else "down")
                for _ in range(400):
                    if target in str(monitor.query_one("#title").render()):
                        break
                    await pilot.pause(0.005)
                repaint.append(time.perf_counter() - clock)
            await pilot.pause(0.2)
    RunModel.apply = original_apply  # type: ignore[method-assign]
    rates = [_median_rate(h.run_dir) for h in handles]
    return {"event_p95_s": p95(latencies) if latencies else None, "events": len(latencies),
            "repaint_p95_s": p95(repaint) if repaint else None, "key_presses": len(repaint), "images_per_s": rates}


def _median_rate(run_dir: Path) -> float:
    from engine.runs import epoch_rows

    rows = epoch_rows(run_dir)[1:]  # epoch 1 holds warm-up
    return statistics.median(r["images_per_s"] for r in rows)


def headless_rate(runs: Path, epochs: int) -> float:
    """The same run through the `train` command, no app."""
    out = subprocess.run([sys.executable, "-m", "console.cli", "train", "quickstart", "--quiet", "--json",
                          "--runs-dir", str(runs), "--set", f"train.epochs={epochs}", "--set", "train.log_every=5"],
                         capture_output=True, text=True, check=True)
    return _median_rate(Path(json.loads(out.stdout)["run_dir"]))


async def _memory_with_runs(runs: Path, mode: str) -> dict[str, Any]:
    """Resident memory of the UI process once Runs lists every run, the app opened on `mode`."""
    import psutil

    from console.app import create_app
    from console.screens.runs import RunsScreen

    app = create_app(runs, mode=mode)
    async with app.run_test(size=(120, 40)) as pilot:
        if mode == "launch":  # let Launch resolve and preview its experiment first, as a user would see it
            for _ in range(200):
                await pilot.pause(0.05)
        await pilot.press("f4")
        screen = app.get_screen("runs", RunsScreen)
        for _ in range(1200):
            await pilot.pause(0.05)
            table = screen.query("DataTable")
            if table and max(t.row_count for t in table) >= 1000:
                break
        return {"opened_on": mode, "rss_mb": psutil.Process().memory_info().rss / 2**20,
                "rows": max(t.row_count for t in screen.query("DataTable")), "torch_imported": "torch" in sys.modules}


def make_runs(source: Path, runs: Path, count: int) -> None:
    """`count` copies of a finished run's records (config, status, events; no checkpoints)."""
    for index in range(count):
        target = runs / f"{source.name}-{index:04d}"
        target.mkdir(parents=True)
        for name in ("config.yaml", "status.json", "events.jsonl"):
            shutil.copy2(source / name, target / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--memory", type=Path, help=argparse.SUPPRESS)  # internal: one fresh UI process
    parser.add_argument("--memory-mode", default="runs", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory:
        print(json.dumps(asyncio.run(_memory_with_runs(args.memory, args.memory_mode))))
        return
    import torch

    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    os.environ.setdefault("IMGCLS_DATA_DIR", str(work / "data"))
    results: dict[str, Any] = {"device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
                               "python": platform.python_version(), "torch": torch.__version__}
    subprocess.run([sys.executable, "-m", "console.cli", "data", "stats", "digits"], capture_output=True, check=True)
    results["startup"] = startup(work / "empty-runs", args.repeats)
    # Followed in the app and headless, alternately `repeats` times: one run of each is too noisy a reference
    # (two single measurements minutes apart differed by 11 %); the ratio is the median of the pairs' ratios.
    headless, followed = [], []
    for repeat in range(args.repeats):
        headless.append(headless_rate(work / f"headless-{repeat}", args.epochs))
        followed.append(asyncio.run(_follow_latency(work / f"one-{repeat}", args.epochs, two_runs=False)))
    results["headless_images_per_s"] = [round(rate, 1) for rate in headless]
    results["one_run"] = followed
    ratios = [run["images_per_s"][0] / rate for run, rate in zip(followed, headless)]
    results["app_vs_headless"] = {"median": statistics.median(ratios), "all": [round(r, 3) for r in ratios]}
    results["one_run_event_p95_s"] = statistics.median(run["event_p95_s"] for run in followed)
    results["two_runs"] = asyncio.run(_follow_latency(work / "two", args.epochs, two_runs=True))
    source = next((work / "headless-0").iterdir())
    make_runs(source, work / "many", 1000)
    results["thousand_runs"] = []
    for mode in ("runs", "launch"):
        out = subprocess.run([sys.executable, __file__, "--memory", str(work / "many"), "--memory-mode", mode],
                             capture_output=True, text=True, check=True)
        results["thousand_runs"].append(json.loads(out.stdout.splitlines()[-1]))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
