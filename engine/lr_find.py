"""The LR range test: raise the LR exponentially over a few hundred steps and watch the loss."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import ExperimentConfig
from engine.events import EventWriter
from engine.runtime import autocast, autocast_dtype, configure_cpu_threads, pick_device, seed_everything


def check_ramp(start_lr: float, end_lr: float, steps: int) -> None:
    """Refuse a ramp the test cannot run, in one line: LRs finite and positive, rising; at least 5 steps."""
    from engine.errors import ConfigError

    for name, value in (("--start-lr", start_lr), ("--end-lr", end_lr)):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} {value}: expected a positive learning rate, e.g. 1e-6")
    if end_lr <= start_lr:
        raise ConfigError(f"--end-lr {end_lr:g}: the ramp rises, so it must be above --start-lr {start_lr:g}")
    if steps < 5:
        raise ConfigError(f"--steps {steps}: the test needs at least 5 steps to suggest anything (200 is usual)")


def lr_range_test(config: ExperimentConfig, *, start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 200,
                  smoothing: float = 0.05, diverge_factor: float = 4.0,
                  progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Run the test on the experiment's data/model/optimizer; returns the series and a suggested LR. Running out
    of memory (setup or steps) is one EngineError naming the batch size and what to try."""
    from engine.inference import is_out_of_memory, out_of_memory_error

    check_ramp(start_lr, end_lr, steps)
    try:
        return _range_test(config, start_lr=start_lr, end_lr=end_lr, steps=steps, smoothing=smoothing,
                           diverge_factor=diverge_factor, progress=progress)
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory_error(exc, "in the LR range test", config.train.batch_size, "train.batch_size",
                                      config.train.device) from None
        raise


def _range_test(config: ExperimentConfig, *, start_lr: float, end_lr: float, steps: int, smoothing: float,
                diverge_factor: float, progress: Callable[[int, int, float], None] | None) -> dict[str, Any]:
    from engine.setup import build_parts

    device = pick_device(config.train.device)
    seed_everything(config.train.seed, config.train.deterministic, device)
    configure_cpu_threads(config.train.cpu_threads, device)
    parts = build_parts(config, device, EventWriter(None))
    amp = autocast_dtype(config.train.precision, device)
    factor = (end_lr / start_lr) ** (1.0 / max(steps - 1, 1))
    series: list[dict[str, float]] = []
    smoothed, best = None, math.inf
    parts.model.train()
    step = 0
    while step < steps:
        parts.train_loader.set_epoch(step)
        for images, labels in parts.train_loader:
            lr = start_lr * factor**step
            for group in parts.optimizer.param_groups:
                group["lr"] = lr
            inputs, targets = parts.augmenter.train_batch(images, labels, parts.generator)
            with autocast(amp, device):
                logits = parts.model(inputs)
            loss = parts.loss(logits.float(), targets)
            parts.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parts.optimizer.step()
            value = float(loss.detach())
            smoothed = value if smoothed is None else smoothing * value + (1 - smoothing) * smoothed
            series.append({"lr": lr, "loss": value, "smoothed": smoothed})
            best = min(best, smoothed)
            step += 1
            if progress is not None:
                progress(step, steps, lr)
            if step >= steps or not math.isfinite(value) or smoothed > diverge_factor * best:
                step = steps
                break
    return {"series": series, "suggested_lr": suggest_lr(series), "start_lr": start_lr, "end_lr": end_lr,
            "experiment": config.name, "time": time.time()}


def suggest_lr(series: list[dict[str, float]]) -> float | None:
    """The LR where the smoothed loss falls fastest (steepest negative slope in log-LR) before its minimum,
    once it has begun to fall: the slope is taken over a twentieth of the range (a 2-point slope picked noise
    at LRs too small to train: 3.7e-06 on a ResNet whose loss fell around 1e-3), and points where the loss has
    not yet fallen a tenth of the way to its minimum are passed over. Else a tenth of the LR at the minimum."""
    points = [(math.log10(p["lr"]), p["smoothed"]) for p in series if math.isfinite(p["smoothed"])]
    if len(points) < 5:
        return None
    lowest = min(range(len(points)), key=lambda i: points[i][1])
    start, bottom = points[0][1], points[lowest][1]
    falling = start - 0.1 * (start - bottom)  # a loss at or below this has begun to fall
    window = max(2, len(points) // 20)
    best_i, best_slope = None, 0.0
    for i in range(window, lowest + 1):
        if points[i][1] > falling:
            continue
        slope = (points[i][1] - points[i - window][1]) / (points[i][0] - points[i - window][0])
        if slope < best_slope:
            best_i, best_slope = i - window // 2, slope  # the middle of the steepest stretch
    if best_i is None:
        return 10 ** points[lowest][0] / 10
    return 10 ** points[best_i][0]


def save_series(result: dict[str, Any], path: Path) -> None:
    """Write the plot-ready series as JSON."""
    import json

    from engine.runs import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1))


def plain_chart(xs: list[float], ys: list[float], *, width: int = 60, height: int = 10,
                log_x: bool = False) -> list[str]:
    """A small text chart (rows top to bottom) for terminals and logs."""
    if not xs:
        return []
    px = [math.log10(x) if log_x else x for x in xs]
    finite = [y for y in ys if math.isfinite(y)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    left = min(px)  # once: in the loop it made a chart of n points cost n² (schedule preview of 100,000 epochs
    span_x = (max(px) - left) or 1.0  # ran for minutes)
    span_y = (high - low) or 1.0
    grid = [[" "] * width for _ in range(height)]
    for x, y in zip(px, ys):
        if not math.isfinite(y):
            continue
        col = min(width - 1, int((x - left) / span_x * (width - 1)))
        row = min(height - 1, int((high - y) / span_y * (height - 1)))
        grid[row][col] = "*"
    return ["".join(r) for r in grid]
