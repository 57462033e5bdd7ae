"""Side by side (History: space marks two runs, `d`), from issue 24's README walk: Home and End went
sideways (Textual DataTable's own keys) instead of to the first and last row, and two load levels of
one sweep (`concurrency 1` beside `concurrency 2`) lined up no row, every figure `–` on one side."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from textual.widgets import DataTable

from tests.support.first_hour_support import add_load_sweep
from tests.support.tui_support import fixed_store, settle
from tests.support.wait import wait_for
from tui.app import TokentopApp
from tui.screens.help import HelpScreen
from tui.screens.side_by_side import SideBySideScreen

RUN_A, RUN_B = "20250301-120000-aaaaaa", "20250302-090000-bbbbbb"  # tests/support/tui_support.py's suite runs


@pytest.fixture
def store(tmp_path, utc):
    store = fixed_store(tmp_path / "sbs.duckdb")
    yield store
    store.close()


def rows_of(table: DataTable) -> dict[str, list[str]]:
    return {str(table.get_row_at(i)[0]).strip("≠ ").strip(): [str(c) for c in table.get_row_at(i)[1:]]
            for i in range(table.row_count)}


async def open_side_by_side(app, pilot, run_ids: list[str]) -> DataTable:
    await settle(pilot)
    app.open_side_by_side(run_ids)
    await wait_for(pilot, lambda: isinstance(app.screen, SideBySideScreen) and app.screen.runs, 20, "side by side")
    table = app.screen.query_one("#sbs-table", DataTable)
    await wait_for(pilot, lambda: table.row_count > 0, 10, "its rows")
    return table


async def test_home_and_end_go_to_the_first_and_last_row_and_help_says_so(store):
    app = TokentopApp(store=store, autostart=False, db_label="sbs.duckdb", mode="history")
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_side_by_side(app, pilot, [RUN_B, RUN_A])
        assert app.focused is table and table.row_count > 20  # more rows than 80x24 shows
        await pilot.press("end")
        await wait_for(pilot, lambda: table.cursor_row == table.row_count - 1, 5, "the last row")
        await wait_for(pilot, lambda: table.scroll_y == table.max_scroll_y > 0, 5, "the table scrolled to it")
        assert table.scroll_x == 0
        await pilot.press("home")
        await wait_for(pilot, lambda: table.cursor_row == 0 and table.scroll_y == 0, 5, "the first row, shown")
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "Help")
        own = dict(app.screen.sections[0][1])  # the screen's own keys: {keys: what they do}
        assert "Home the first row, End the last" in own.get("↑ / ↓ / PgUp / PgDn / Home / End", ""), own


async def test_two_load_levels_of_one_sweep_share_their_figure_rows(store):
    c1, c8 = add_load_sweep(store, started=datetime(2025, 3, 5, 9, 0, tzinfo=timezone.utc))
    app = TokentopApp(store=store, autostart=False, db_label="sbs.duckdb", mode="history")
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_side_by_side(app, pilot, [c1, c8])
        rows = rows_of(table)
        # One row per figure with both levels in it (was: `concurrency 1 …` and `concurrency 8 …`, each `–` once).
        assert rows["level TTFT mean ms"][0].startswith("81.0") and rows["level TTFT mean ms"][1].startswith("3735.4")
        # Both sides filled, except the two speeds, kept apart by design: c=1 ran at batch 1 (b1 TPS), c=8 not.
        speeds = {"level b1 TPS", "level user tok/s"}
        assert [(n, c) for n, c in rows.items() if n.startswith("level ") and n not in speeds and "–" in c] == []
        assert rows["level b1 TPS"][1] == "–" and rows["level user tok/s"][0] == "–"
        assert rows["level"] == ["concurrency 1", "concurrency 8"]  # which level each run ran, marked ≠
        headers = [str(c.label) for c in table.columns.values()][1:]
        assert headers == [f"A {c1[-6:]} c=1", f"B {c8[-6:]} c=8"], headers


async def test_the_same_level_of_two_sweeps_keeps_its_name(store):
    first = add_load_sweep(store, started=datetime(2025, 3, 5, 9, 0, tzinfo=timezone.utc))
    second = add_load_sweep(store, started=datetime(2025, 3, 6, 9, 0, tzinfo=timezone.utc), ttft_ms=(90.0, 3000.0))
    app = TokentopApp(store=store, autostart=False, db_label="sbs.duckdb", mode="history")
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_side_by_side(app, pilot, [first[1], second[1]])
        rows = rows_of(table)
        assert rows["concurrency 8 TTFT mean ms"][1].startswith("3000.0")
        assert rows["level"] == ["concurrency 8", "concurrency 8"]


async def test_history_home_and_end_go_to_the_first_and_last_run(store):
    """History's table (tui.widgets.paged_table.PagedTable) had DataTable's Home/End: sideways only."""
    from tui.widgets.paged_table import PagedTable

    app = TokentopApp(store=store, autostart=False, db_label="sbs.duckdb", mode="history")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PagedTable)
        await wait_for(pilot, lambda: table.row_count > 1, 10, "the runs")
        table.focus()
        await pilot.press("end")
        await wait_for(pilot, lambda: table.cursor_row == table.row_count - 1, 5, "the last run")
        await pilot.press("home")
        await wait_for(pilot, lambda: table.cursor_row == 0, 5, "the first run")
