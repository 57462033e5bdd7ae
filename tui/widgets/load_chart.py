"""The Load screen's chart: output throughput and TTFT p99 against the load level (concurrency or
request rate) as a sweep proceeds, or after a sweep its priced frontier (tui.widgets.frontier_chart).

One line above the plot names what is drawn, in the lines' own colours (the legend: it covers no data);
the plot has no title, no axis-label row and no upper frame, so at 80x24 its rows go to the data. Both y
axes start at 0 with a 0 tick (round steps, `zero_ticks`); the x axis is ticked at the levels run and
nowhere else (1, 2, 4 — never 0.55), spaced by their logarithm when they span 8x or more (a sweep's
1 … 256), else linearly from 0. `draw_load` builds the figure on any plotext figure (tests read it
with `build()`); `LoadChart` is the widget, redrawn to its size."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tui.widgets.frontier_chart import draw_frontier, round_step, set_zero_yaxis, tick_labels

THROUGHPUT_COLOR = "cyan"  # plotext and rich spell these two the same
TTFT_COLOR = "magenta"
LEGEND_MARK = "━"


def level_label(x: float) -> str:
    """A level as its tick reads: 4 → "4", 0.5 → "0.5"."""
    return f"{x:.0f}" if float(x).is_integer() else f"{x:g}"


def level_positions(levels: list[float]) -> tuple[list[float], bool]:
    """Where each level sits on the x axis, and whether the axis is logarithmic: log2 of the level when
    the levels (all > 0) span 8x or more, so 1, 2 and 4 stay apart beside 256; else the level itself."""
    log = len(levels) > 2 and min(levels) > 0 and max(levels) / min(levels) >= 8
    return ([math.log2(x) for x in levels] if log else list(levels)), log


def draw_load(plt: Any, points: list[tuple[float, float, float | None]], *, rows: int | None = None,
              width: int | None = None) -> None:
    """Draw a sweep's `points` — (level: concurrency or req/s, output tok/s, TTFT p99 ms or None) — on
    the plotext figure `plt`: throughput on the left axis, TTFT p99 on the right, both from 0, ticked for
    `rows` data rows; x ticks at the levels only (labels that would touch a neighbour's within `width`
    columns are left out, the level's point stays). No legend, title or axis labels on the figure:
    `legend_text` is its legend. No points: an empty frame."""
    plt.clear_data()
    plt.clear_figure()
    plt.xaxes(True, False)
    if not points:
        return
    levels = sorted({p[0] for p in points})
    where, log = level_positions(levels)
    at = dict(zip(levels, where))
    pts = sorted(points)
    plt.plot([at[p[0]] for p in pts], [p[1] for p in pts], marker="braille", color=THROUGHPUT_COLOR)
    ttft = [(at[p[0]], p[2]) for p in pts if p[2] is not None]
    ticks = set_zero_yaxis(plt, max(p[1] for p in pts) or 1.0, rows)
    if ttft:
        plt.plot([t[0] for t in ttft], [t[1] for t in ttft], marker="braille", color=TTFT_COLOR, yside="right")
        # as many ticks as the left axis, on the same rows: one grid of rows for both
        top = max(t[1] for t in ttft) or 1.0
        step = round_step(top / (len(ticks) - 1))
        right = [round(i * step, 10) for i in range(len(ticks))]
        plt.ylim(0, right[-1], yside="right")
        plt.yticks(right, tick_labels(right), yside="right")
    lo, hi = (min(where), max(where)) if log else (0.0, max(where))
    pad = (hi - lo) * 0.06 or 0.5
    plt.xlim(lo - (pad if log else 0), hi + pad)
    labels = [level_label(x) for x in levels]
    if width:  # leave out a label that would run into the one before it
        cols = max(10, width - 12)  # the plot's columns: the tick labels of both y axes take the rest
        span = (hi + pad) - (lo - (pad if log else 0))
        kept, last = [], -math.inf
        for pos, label in zip(where, labels):
            col = (pos - (lo - (pad if log else 0))) / span * cols
            if col - last >= len(label) + 1 or not kept:
                kept.append((pos, label))
                last = col
        plt.xticks([k[0] for k in kept], [k[1] for k in kept])
    else:
        plt.xticks(where, labels)


def legend_text(points: list[tuple[float, float, float | None]], x_name: str, width: int = 80) -> Text:
    """The line above the load plot: each line's name in its colour and which axis it is read on, then
    what the x axis counts; the longest form that fits `width` columns."""
    has_ttft = any(p[2] is not None for p in points)
    forms = [("out tok/s (left)", "TTFT p99 ms (right)", f"  x: {x_name}"),
             ("out tok/s (left)", "TTFT p99 ms (right)", f" · {x_name}"),
             ("tok/s (left)", "TTFT p99 ms (right)", f" · {x_name}"),
             ("tok/s (left)", "TTFT p99 ms (right)", ""),
             ("tok/s", "TTFT p99", "")]
    for tps, ttft, x in forms:
        text = Text()
        text.append(LEGEND_MARK, style=THROUGHPUT_COLOR)
        text.append(f" {tps}")
        if has_ttft:
            text.append(" ")
            text.append(LEGEND_MARK, style=TTFT_COLOR)
            text.append(f" {ttft}")
        text.append(x, style="dim")
        if text.cell_len <= width:
            return text
    return text


class LoadChart(Vertical):
    """`show_load(points, x_name)` while a sweep runs; `show_frontier(frontier, title)` after it. Redraws
    itself to its size (the ticks depend on the rows it has)."""

    DEFAULT_CSS = """
    LoadChart { height: 1fr; }
    LoadChart > .load-chart-legend { height: 1; padding: 0 1; }
    LoadChart > PlotextPlot { height: 1fr; }
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._spec: tuple = ("load", [], "concurrency")

    def compose(self) -> ComposeResult:
        yield Static("", classes="load-chart-legend")
        yield PlotextPlot()

    @property
    def plot(self) -> PlotextPlot:
        return self.query_one(PlotextPlot)

    def show_load(self, points: list[tuple[float, float, float | None]], x_name: str) -> None:
        self._spec = ("load", list(points), x_name)
        self._draw()

    def show_frontier(self, frontier: Any, title: str) -> None:
        self._spec = ("frontier", frontier, title)
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        kind, what, words = self._spec
        width = self.size.width or 53
        rows = max(1, (self.size.height or 9) - 3) or None  # less the legend, the frame and the x ticks
        plot = self.plot
        legend = self.query_one(".load-chart-legend", Static)
        if kind == "frontier":
            legend.update(Text(words))
            draw_frontier(plot.plt, what, rows=rows, compact=True)
        else:
            legend.update(legend_text(what, words, width - 2) if what else Text(f"throughput and TTFT p99 vs {words}"))
            draw_load(plot.plt, what, rows=rows, width=width)
        plot.refresh()
