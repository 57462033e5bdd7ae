"""Charts a user reads at 80x24 (issue 24): the Load screen's frontier with rows to read and a y axis from
a 0 tick, its throughput/TTFT chart with the legend off the lines and x ticks at the levels only, cost bars
whose lengths follow their values, and a stopped Suite table whose dashes line up with the figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual_plotext.plot import Plot

from data.analysis.frontier import build_frontier
from data.store.database import Store
from tests.support.apps import LoadHost
from tests.support.first_hour_support import screen_text
from tests.support.matrix_support import build_box
from tests.support.tui_support import FakeSession
from tests.support.wait import wait_for
from tui.widgets.bar_chart import Bar, bar_lines

BRAILLE = re.compile("[\u2800-\u28ff]")
PARTS = "▏▎▍▌▋▊▉"  # a cell's left 1/8 … 7/8


@pytest.fixture(scope="module")
def box_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("charts") / "box.duckdb"
    build_box(path, "box_h100_runpod").close()  # a priced sweep: three levels on an H100 at RunPod
    return path


def plot_rows(text: str) -> tuple[list[str], str]:
    """The rows of a plotext chart inside its frame (from the first row with a y tick to the row above
    └), and the row of x tick labels under the frame."""
    lines = text.splitlines()
    bottom = max(i for i, line in enumerate(lines) if "└" in line)
    top = min(i for i, line in enumerate(lines) if "┤" in line)
    return lines[top:bottom], lines[bottom + 1]


def left_ticks(rows: list[str]) -> list[str]:
    return [m.group(1) for row in rows if (m := re.match(r"\s*([\d.]+)┤", row))]


async def test_the_load_frontier_has_rows_to_read_and_a_y_axis_from_a_0_tick(box_path):
    with Store(box_path) as store:
        frontier = build_frontier(store)
        app = LoadHost(FakeSession(store))
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            await wait_for(pilot, lambda: screen.query("#load-chart"), what="the Load screen")
            screen.frontier, screen.chart_view, screen._final_shown = frontier, "frontier", True
            screen._draw_chart()
            await pilot.pause()
            rows, _ticks = plot_rows(screen_text(app))
            assert len(rows) >= 5, rows  # was 3
            ticks = left_ticks(rows)
            assert ticks[-1] == "0" and rows[-1].lstrip().startswith("0┤"), rows  # 0 on the bottom row
            assert [float(t) for t in ticks] == sorted((float(t) for t in ticks), reverse=True)
            assert all(re.fullmatch(r"\d+", t) for t in ticks), ticks  # round steps: 0, 200, 400


async def test_the_load_chart_legend_covers_no_line_and_its_x_ticks_are_the_levels():
    app = LoadHost(FakeSession(None))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.query("#load-chart"), what="the Load screen")
        screen.points[:] = [(1.0, 52.3, 81.0), (2.0, 97.0, 140.0)]
        screen._draw_chart()
        await pilot.pause()
        text = screen_text(app)
        rows, ticks = plot_rows(text)
        assert ticks.split() == ["1", "2"], ticks  # was 0.00 0.55 1.10 1.65 2.20
        legend = [line for line in text.splitlines() if "TTFT p99" in line]
        assert legend and not any("┤" in line or BRAILLE.search(line) for line in legend), legend
        assert not any(re.search(r"[A-Za-z]", row.split("┤", 1)[-1].rsplit("├", 1)[0]) for row in rows), rows
        assert left_ticks(rows)[-1] == "0"


def test_load_chart_x_ticks_for_a_sweep_of_doublings_are_every_level():
    from tui.widgets.load_chart import draw_load

    levels = [1, 2, 4, 8, 16, 32, 64, 128]
    plt = Plot()
    draw_load(plt, [(float(c), 40.0 * c ** 0.5, 80.0 + 5 * c) for c in levels], rows=5, width=53)
    plt.plotsize(53, 7)
    plt.theme("clear")
    rows, ticks = plot_rows(re.sub(r"\x1b\[[0-9;]*m", "", plt.build()))
    assert ticks.split() == [str(c) for c in levels], ticks  # 1, 2 and 4 apart beside 128
    assert left_ticks(rows)[-1] == "0"


def bar_eighths(line: str) -> int:
    """A drawn bar's length in eighths of a cell."""
    return sum(8 if ch == "█" else PARTS.index(ch) + 1 for ch in line if ch == "█" or ch in PARTS)


def test_cost_bars_are_as_long_as_their_values_with_long_labels():
    # The Compare screen's costs chart at 80x24 (half the width): the article's rows, labels 18-31 wide.
    costs = [("Vast.ai RTX4090-24", 2.43), ("RunPod RTX4090-24", 3.09), ("Vast.ai A100-SXM-80", 3.38),
             ("Vast.ai H100-SXM-80", 3.54), ("RunPod A100-SXM-80", 3.67), ("Lambda A100-SXM-80", 3.85)]
    bars = [Bar(f"{label} (article)", value) for label, value in costs]
    lines = [t.plain for t in bar_lines("$/1M output tokens", bars, width=38, height=8, digits=2)]
    drawn = lines[1:]
    assert all(len(line) <= 38 for line in lines), lines
    lengths = [bar_eighths(line) for line in drawn]
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths), lines  # was one █ each
    for (_label, value), n in zip(costs, lengths):  # from 0 to the largest, within an eighth of a cell
        assert abs(n / lengths[-1] - value / 3.85) <= 1 / lengths[-1] + 1e-9, (value, n, lines)
    # Every label whole: the words they all share are said once, in the title.
    assert "(article)" in lines[0] and [line.split("  ")[0].split(" █")[0].strip() for line in drawn] == [
        label for label, _v in costs]


def test_cost_bars_differ_by_eighths_of_a_cell():
    lines = [t.plain for t in bar_lines("$/1M", [Bar("a", 2.43), Bar("b", 2.50), Bar("c", 3.85)], width=30,
                                        height=4, digits=2)]
    a, b, c = (bar_eighths(line) for line in lines[1:])
    assert a < b < c, lines
    assert any(ch in PARTS for line in lines[1:] for ch in line), lines  # partial cells drawn


async def test_a_stopped_suite_keeps_its_dashes_under_the_figures_column(tmp_path):
    from tests.support.tui_support import fixed_store
    from tui.app import TokentopApp
    from tui.screens.suite import SuiteScreen

    store = fixed_store(tmp_path / "suite.duckdb")
    app = TokentopApp(store=store, session=FakeSession(store), autostart=False, db_label="suite.duckdb",
                      mode="suite")
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, SuiteScreen)
            await wait_for(pilot, lambda: screen.suite is not None, what="the seed suite")
            first, *rest = [case.id for case in screen.suite.cases]
            screen.reps = 10
            # Stopped after three requests of the first case: the others never started.
            screen._update_case(first, {"completed": 3, "mean_output_tokens": 128, "mean_ttft_ms": 81.2,
                                        "median_ttft_ms": 80.1, "p99_ttft_ms": 95.0, "mean_tpot_ms": 31.02,
                                        "mean_tps": 32.1})
            await pilot.pause()
            lines = screen_text(app).splitlines()
            row = {case: next(line for line in lines if re.match(rf"│ {case}\s", line)) for case in (first, *rest)}

            def right_edges(line: str) -> list[int]:  # where each cell after case and target ends
                return [m.end() for m in re.finditer(r"[^\s│]+", line)][2:]

            figures = right_edges(row[first])
            assert len(figures) == 7, row[first]
            for case in rest:
                assert right_edges(row[case]) == figures, (row[first], row[case])
    finally:
        store.close()
