"""Round y-axis ticks: the values, and a real plotext figure labelled with them."""

from __future__ import annotations

import math

from textual_plotext import PlotextPlot

from console.widgets.chart_axes import nice_ticks, round_y_axis, tick_label


def test_ticks_are_round_inside_the_data_and_at_least_the_step_apart() -> None:
    assert nice_ticks(0.0005, 0.05, 6) == [0.01, 0.02, 0.03, 0.04, 0.05]
    assert nice_ticks(0.0005, 0.05, 6, min_step=0.0495 / 4) == [0.02, 0.04]  # 5 rows: one apart at least
    assert nice_ticks(73.4, 100, 6, min_step=26.6 / 3) == [80, 90, 100]
    assert nice_ticks(0, 2.3, 6) == [0, 0.5, 1, 1.5, 2]
    assert nice_ticks(100, 0, 3) == [0, 50, 100]  # reversed limits
    assert nice_ticks(1.0, 1.0, 4) == [1.0] and nice_ticks(0, math.inf, 4) == []
    for low, high, most in [(0.2, 0.21, 4), (-3, 7, 4), (1e-6, 3e-4, 5), (12_000, 950_000, 6)]:
        ticks = nice_ticks(low, high, most)
        assert 2 <= len(ticks) <= most and low <= ticks[0] and ticks[-1] <= high
        steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:])}
        assert len(steps) == 1
        mantissa = steps.pop() / 10 ** math.floor(math.log10(ticks[1] - ticks[0]))
        assert any(math.isclose(mantissa, m) for m in (1, 2, 5))
    assert [tick_label(v, 0.005) for v in nice_ticks(0.2, 0.21, 4)] == ["0.200", "0.205", "0.210"]
    assert tick_label(100.0, 10) == "100"


def test_a_figure_gets_round_labels_and_keeps_its_own_ticks() -> None:
    plt = PlotextPlot().plt
    xs = [i / 10 for i in range(151)]
    plt.clear_figure()
    plt.plot(xs, [0.0005 + 0.0495 * (1 + math.cos(math.pi * x / 15)) / 2 for x in xs])
    plt.plotsize(40, 14)
    round_y_axis(plt, 14)
    plt.theme("clear")  # no colour codes in the text
    labels = {line.split("┤")[0].strip() for line in plt.build().splitlines() if "┤" in line}
    assert labels == {"0.01", "0.02", "0.03", "0.04", "0.05"}  # not plotext's 0.0418, 0.0335, ...

    plt.clear_figure()
    plt.bar(["a", "b"], [3, 7])
    plt.yticks([0, 7], ["none", "all"])  # a chart's own ticks stay
    round_y_axis(plt, 14)
    assert sorted(plt._active.monitor.yticks[0]) == [0, 7]  # plotext keeps them in no particular order

    plt.clear_figure()  # an LR a step into its decay: flat to the eye, one tick at its value
    plt.plot([0, 0.1, 0.2], [0.05, 0.049999, 0.049998])
    plt.plotsize(40, 14)
    round_y_axis(plt, 14)
    plt.theme("clear")
    labels = {line.split("┤")[0].strip() for line in plt.build().splitlines() if "┤" in line}
    assert labels == {"0.05"}
