"""Draw a priced throughput–latency frontier (data.analysis.frontier.Frontier) on a plotext figure.

One curve per run/GPU (throughput per GPU against per-user tok/s, or against TTFT at the percentile),
Pareto-optimal points marked, and $/1M at the cheapest provider written at each point. Used by the Compare
matrix screen, the Load screen after a sweep (tui.widgets.load_chart) and the run detail of a load run.
Also the y axis' ticks every chart of a speed or a latency shares (`zero_ticks`): from 0, round steps."""

from __future__ import annotations

import math
from typing import Any

AXES = ("user", "ttft")


def zero_ticks(top: float, rows: int | None = None) -> list[float]:
    """Ticks for an axis from 0 to at least `top` (a speed, a latency: never negative): 0 first, then
    evenly spaced round values (1, 2, 2.5 or 5 × 10^k), the last one >= `top`. At most one tick every
    other row of the `rows` rows the axis spans (2 to 5 ticks; 5 when `rows` is None), so no two labels
    share a row or touch. `top` <= 0 gives [0, 1]."""
    most = 5 if rows is None else max(2, min(5, (rows - 1) // 2 + 1))
    if not top or top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / (most - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    # Of the round steps that need at most `most` ticks, the one whose last tick is the closest above `top`.
    steps = [m * power for m in (1, 2, 2.5, 5, 10, 20) if math.ceil(top / (m * power) - 1e-9) <= most - 1]
    step = min(steps, key=lambda st: (math.ceil(top / st - 1e-9) * st, st))
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def round_step(at_least: float) -> float:
    """The smallest round step (1, 2, 2.5 or 5 × 10^k) >= `at_least` (> 0)."""
    power = 10.0 ** math.floor(math.log10(at_least))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= at_least * (1 - 1e-9))


def tick_labels(ticks: list[float]) -> list[str]:
    """Tick values as short labels: whole numbers without decimals ("0", "250"), others as %g."""
    return [f"{t:.0f}" if float(t).is_integer() else f"{t:g}" for t in ticks]


def set_zero_yaxis(plt: Any, top: float, rows: int | None = None, yside: str = "left") -> list[float]:
    """Put the plotext figure's `yside` y axis from 0 to a round value >= `top`, ticked at `zero_ticks`
    (a 0 tick at the bottom). Returns the ticks."""
    ticks = zero_ticks(top, rows)
    plt.ylim(0, ticks[-1], yside=yside)
    plt.yticks(ticks, tick_labels(ticks), yside=yside)
    return ticks


def draw_frontier(plt: Any, frontier: Any, axis: str = "user", *, title: str | None = None,
                  rows: int | None = None, compact: bool = False) -> None:
    """Draw `frontier` (or an empty figure for None / no points) on `plt`, against per-user tok/s
    (`axis` "user") or TTFT at the frontier's percentile ("ttft"). The y axis (tok/s per GPU) starts at 0
    with a 0 tick, ticked for `rows` plot rows (see `zero_ticks`). `compact`: no title, no axis labels and
    no upper frame (the caller names the axes beside the chart), so a short chart keeps its rows for the
    points."""
    plt.clear_data()
    plt.clear_figure()
    user = axis == "user"
    pct = f"p{frontier.percentile:g}" if frontier is not None else "p99"
    if compact:
        plt.xaxes(True, False)
    else:
        plt.title(title or ("tok/s per GPU vs per-user tok/s ($/1M at each point)" if user
                            else f"tok/s per GPU vs {pct} TTFT ($/1M at each point)"))
        plt.xlabel("per-user tok/s" if user else f"{pct} TTFT ms")
        plt.ylabel("tok/s/GPU")
    if frontier is None or not frontier.points:
        return

    def x_of(p) -> float | None:
        return p.level.per_user_tps if user else p.level.ttft_ms

    # No legend: it would cover points in a small terminal; the table beside the chart names each curve.
    for _curve, points in frontier.curves().items():
        pts = [p for p in points if x_of(p) is not None]
        pts.sort(key=x_of)
        if pts:
            plt.plot([x_of(p) for p in pts], [p.level.per_gpu_throughput for p in pts], marker="braille")
    front = [p for p in frontier.points if (p.pareto_user if user else p.pareto_ttft) and x_of(p) is not None]
    if front:
        plt.scatter([x_of(p) for p in front], [p.level.per_gpu_throughput for p in front], marker="*", color="green")
    xs = [x_of(p) for p in frontier.points if x_of(p) is not None]
    ys = [p.level.per_gpu_throughput for p in frontier.points if x_of(p) is not None]
    if xs:
        # Both axes from 0 (speeds and latencies are never negative); room on the right for the prices.
        plt.xlim(0, (max(xs) or 1.0) * 1.3)
        set_zero_yaxis(plt, max(ys) or 1.0, rows)
    for p in frontier.points:  # $/1M at the cheapest provider; * = Pareto-optimal
        if p.cheapest_usd_per_million is not None and x_of(p) is not None:
            star = "*" if (p.pareto_user if user else p.pareto_ttft) else ""  # the text covers the point's marker
            plt.text(f"{star}${p.cheapest_usd_per_million:.2f}", x_of(p), p.level.per_gpu_throughput, alignment="left")
