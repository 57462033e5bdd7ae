"""Draw a priced throughput–latency frontier (data.analysis.frontier.Frontier) on a plotext figure.

One curve per run/GPU (throughput per GPU against per-user tok/s, or against TTFT at the percentile),
Pareto-optimal points marked, and $/1M at the cheapest provider written at each point. Used by the Compare
matrix screen, the Load screen after a sweep and the run detail of a load run."""

from __future__ import annotations

from typing import Any

AXES = ("user", "ttft")


def draw_frontier(plt: Any, frontier: Any, axis: str = "user", *, title: str | None = None) -> None:
    plt.clear_data()
    plt.clear_figure()
    user = axis == "user"
    pct = f"p{frontier.percentile:g}" if frontier is not None else "p99"
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
        # Room on the right for the price written after each point, and above the highest one.
        # Both axes from 0 (speeds and latencies are never negative); room on the right for the prices.
        plt.xlim(0, (max(xs) or 1.0) * 1.3)
        top = max(ys) or 1.0
        plt.ylim(0, top * 1.15)
    for p in frontier.points:  # $/1M at the cheapest provider; * = Pareto-optimal
        if p.cheapest_usd_per_million is not None and x_of(p) is not None:
            star = "*" if (p.pareto_user if user else p.pareto_ttft) else ""  # the text covers the point's marker
            plt.text(f"{star}${p.cheapest_usd_per_million:.2f}", x_of(p), p.level.per_gpu_throughput, alignment="left")
