"""Round y-axis ticks for plotext charts: 0.01 0.02 0.03, not 0.0005 0.0170 0.0253 (plotext's own divide the
data's range evenly, which gives labels nobody would write, and drops some where rows are few)."""

from __future__ import annotations

import math
from typing import Any

STEPS = (1.0, 2.0, 5.0)  # ticks step by 1, 2 or 5 times a power of ten


def nice_ticks(low: float, high: float, most: int, min_step: float = 0.0) -> list[float]:
    """The round values between `low` and `high` (inclusive) at the finest step of 1, 2 or 5 times a power of ten,
    at least `min_step`, that gives at most `most` (≥ 2) of them: (0.0005, 0.05, 6) → [0.01, …, 0.05];
    (73.4, 100, 3) → [80, 90, 100]. The axis keeps the data's limits (no rows lost to padding); a flat range
    gets the value itself."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    low, high = min(low, high), max(low, high)
    if high == low:
        return [low]
    most = max(2, most)
    magnitude = 10.0 ** math.floor(math.log10((high - low) / most))
    for power in (1.0, 10.0, 100.0, 1e3, 1e4, 1e5):
        for factor in STEPS:
            step = factor * magnitude * power
            if step < min_step:
                continue
            first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
            if last - first + 1 <= most:
                return [round(index * step, 12) for index in range(first, last + 1)]
    return []


def tick_label(value: float, step: float) -> str:
    """A tick's text with as many decimals as the step needs: 0.02 → `0.02`, 10 → `10`."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    return f"{value:.{decimals}f}"


def round_y_axis(plt: Any, height: int) -> None:
    """Give a drawn figure's linear y axis round ticks, as many as fit `height` rows; a figure with ticks of its
    own, a log axis or no y data is left as it is."""
    monitor = plt._active.monitor  # plotext's figure state: data, limits and ticks per y side
    if monitor.yticks[0] is not None or monitor.yscale[0] != "linear":
        return
    values = [y for series in monitor.y for y in series if isinstance(y, (int, float)) and math.isfinite(y)]
    low, high = monitor.ylim[0]
    low = min(values, default=None) if low is None else low
    high = max(values, default=None) if high is None else high
    if low is None or high is None or low == high:
        return
    if high - low < 1e-3 * max(abs(low), abs(high)):  # flat to the eye (an LR at the start of its decay): one
        middle = (low + high) / 2  # tick at its value, not 0.049998 and 0.050000
        plt.ylim(middle - 0.05 * abs(middle), middle + 0.05 * abs(middle))
        plt.yticks([middle], [f"{middle:.3g}"])
        return
    rows = height - 4  # the title and the frame above, the frame and the x axis's ticks below
    if rows < 2:
        return
    # ticks at least a row apart (closer ones land on the same row and plotext drops one), at most six
    ticks = nice_ticks(low, high, most=6, min_step=(high - low) / (rows - 1))
    if len(ticks) >= 2:
        step = ticks[1] - ticks[0]
        plt.ylim(low, high)  # plotext would pad to its own ticks otherwise
        plt.yticks(ticks, [tick_label(value, step) for value in ticks])
