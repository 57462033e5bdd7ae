"""The Compare matrix screen: reached by keyboard from the app's start state, its SLO and frontier tabs,
and 80x24 snapshots. The database holds two merged machines' runs (tests/fixtures/matrix/)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from textual.app import App
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable, Input, Static, TabbedContent

from data.store.database import Store
from tests.support.matrix_support import build_box, merge
from tests.support.wait import wait_for, wait_steady
from tui.app import TokentopApp
from tui.screens.matrix import CompareMatrixScreen

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def fleet_path(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("fleet-screens")
    build_box(tmp / "laptop.duckdb", "box_h100_runpod").close()
    build_box(tmp / "other.duckdb", "box_a100_lambda").close()
    merge(tmp / "laptop.duckdb", tmp / "other.duckdb", origin="pull:test")
    return tmp / "laptop.duckdb"


@pytest.fixture
def fleet(fleet_path):
    with Store(fleet_path) as store:
        yield store


def highlighted(options: CommandList) -> str:
    """The command palette's highlighted command, "" while it has none."""
    index = options.highlighted
    return "" if index is None else str(options.get_option_at_index(index).prompt)


def cells(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def until(pilot, check, timeout: float = 30.0) -> None:
    await wait_for(pilot, check, timeout, "the screen to get there")


async def test_compare_matrix_opens_by_keyboard_from_the_start_state(fleet):
    app = TokentopApp(store=fleet, autostart=False, db_label="fleet.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.screen.id == "live" and isinstance(app.focused, Input)  # the prompt box has the keys
        await pilot.press("f7")  # Compare, from the prompt box (letters there are typed)
        screen = app.screen
        assert isinstance(screen, CompareMatrixScreen)
        table = screen.query_one("#matrix-table", DataTable)
        await until(pilot, lambda: table.row_count >= 9)
        rows = cells(table)
        assert [str(c.label) for c in table.columns.values()] == [
            "GPU", "provider", "b1 TPS", "load tok/s", "$/h", "$/1M b1", "$/1M ld"]
        assert ["A100-SXM-80 ×2", "Lambda*"] == rows[2][:2] and rows[2][4] == "3.58 P"
        assert sum(r[5].endswith("◀") for r in rows) == 1 and sum(r[6].endswith("◀") for r in rows) == 1
        title = screen.query_one("#matrix-title", Static)
        assert "Compare · workload random 128→100 (1/2 k) · Meta-Llama-3-8B-Instruct" in str(title.render())
        await pilot.press("k")  # the other workload: the suite's runs, never averaged with the sweeps
        assert "workload suite seed (2/2 k)" in str(title.render())
        suite_rows = cells(table)
        assert suite_rows and all(r[3] == "–" for r in suite_rows)  # a suite has no throughput under load
        assert ["A100-SXM-80 ×2", "Lambda*"] == suite_rows[2][:2]
        await pilot.press("k")
        assert "workload random 128→100" in str(title.render()) and cells(table) == rows
        await pilot.press("w")  # the rest of the columns, one key away
        assert [str(c.label) for c in table.columns.values()][2:6] == ["TTFT", "art. $/1M", "art. TPS", "runs"]

        await pilot.press("o")  # cost at the default SLO (p99 TTFT <= 500 ms, TPOT <= 50 ms)
        assert screen.query_one(TabbedContent).active == "tab-slo"
        note = screen.query_one("#slo-note", Static)
        await until(pilot, lambda: "Cheapest in time" in str(note.render()))
        assert "H100-SXM-80 on RunPod, $2.12/1M" in str(note.render())
        slo_input = screen.query_one("#slo-input", Input)
        slo_input.focus()
        slo_input.value = ""
        await pilot.press(*"ttft=10", "enter")
        await until(pilot, lambda: "No level meets the SLO" in str(note.render()))
        assert all(r[1] == "none meets" for r in cells(screen.query_one("#slo-table", DataTable)))
        assert app.focused is slo_input  # the next SLO is typed straight away

        await pilot.press("escape", "f")  # leave the field: the tab letters work again
        frontier = screen.query_one("#frontier-table", DataTable)
        assert screen.query_one(TabbedContent).active == "tab-frontier"
        await until(pilot, lambda: frontier.row_count == 5)
        assert [r[6] for r in cells(frontier)][:3] == ["UT", "UT", "UT"]
        await pilot.press("escape")
        assert app.screen.id == "live"


async def test_compare_is_a_palette_command(fleet):
    app = TokentopApp(store=fleet, autostart=False, db_label="fleet.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Compare")
        await until(pilot, lambda: highlighted(app.screen.query_one(CommandList)).startswith("Compare"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CompareMatrixScreen))


async def test_an_empty_database_shows_the_article_and_says_why(tmp_path):
    with Store(tmp_path / "empty.duckdb") as store:
        app = Host(lambda: CompareMatrixScreen(store, now=NOW))
        async with app.run_test(size=(80, 24)) as pilot:
            legend = app.screen.query_one("#matrix-legend", Static)
            await until(pilot, lambda: "No GPU runs" in str(legend.render()))
            await pilot.press("o")
            note = app.screen.query_one("#slo-note", Static)
            await until(pilot, lambda: "No load levels stored yet" in str(note.render()))


class Host(App):
    def __init__(self, factory):
        super().__init__()
        self.factory = factory

    def on_mount(self) -> None:
        self.push_screen(self.factory())


@pytest.mark.parametrize("tab", ["matrix", "slo", "frontier"])
def test_snapshot_compare_matrix(snap_compare, fleet, tab):
    async def settle(pilot):
        screen = pilot.app.screen
        await until(pilot, lambda: screen.matrix is not None and screen.slo is not None and screen.frontier is not None)
        await pilot.press({"matrix": "m", "slo": "o", "frontier": "f"}[tab])
        # The SLO tab puts the cursor in its field: a blinking cursor would make the picture depend on timing.
        screen.query_one("#slo-input").cursor_blink = False
        await wait_steady(pilot)  # the charts have laid out and drawn

    # Run ids are random (the real recorder): hide them by showing the tabs that do not print them.
    assert snap_compare(Host(lambda: CompareMatrixScreen(fleet, now=NOW)), terminal_size=(80, 24), run_before=settle)


def _h100_sweep(store) -> list[str]:
    return [r["run_id"] for r in store.query(
        "SELECT run_id FROM runs WHERE kind = 'load' AND gpu_key = 'H100-SXM-80' ORDER BY started_at")]


async def test_load_screen_shows_the_sweeps_priced_frontier_when_it_ends(fleet):
    from types import SimpleNamespace

    from tui.screens.load import LoadScreen

    app = Host(lambda: LoadScreen(SimpleNamespace(store=fleet)))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        # What the screen does when the app's load view says the sweep has stored its levels:
        screen.finished = [{"run_id": run_id} for run_id in _h100_sweep(fleet)]
        screen.load_frontier([f["run_id"] for f in screen.finished])
        await until(pilot, lambda: screen.frontier is not None)
        assert screen.chart_view == "frontier" and len(screen.frontier.points) == 3
        assert all(p.cheapest_provider == "runpod" for p in screen.frontier.points)  # the price paid there
        await pilot.press("ctrl+f")  # back to throughput and TTFT against load
        assert screen.chart_view == "load"


async def test_run_detail_of_a_load_level_has_its_sweeps_frontier(fleet):
    from textual.widgets import TabbedContent
    from textual_plotext import PlotextPlot

    from tui.screens.run_detail import RunDetailScreen

    level = _h100_sweep(fleet)[1]
    app = TokentopApp(store=fleet, autostart=False, db_label="fleet.duckdb", mode="history")
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RunDetailScreen(level))
        await until(pilot, lambda: bool(app.screen.query("#chart-frontier")))
        tabs = app.screen.query_one(TabbedContent)
        tabs.active = "tab-frontier"
        await until(pilot, lambda: app.screen.query_one("#chart-frontier", PlotextPlot).region.height > 5)
        assert app.screen.query_one("#chart-frontier", PlotextPlot).region.height > 5
