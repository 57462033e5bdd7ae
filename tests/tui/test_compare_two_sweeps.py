"""Compare's SLO tab on a store holding two sweeps of the same workload: each level row says which
sweep it came from (#1, #2, as `tokentop compare --slo` does), so "c=1" no longer appears twice
with nothing to tell the runs apart."""

from __future__ import annotations

from textual.widgets import DataTable, TabbedContent

from data.store.database import Store
from tests.support.wait import wait_for
from tests.unit.test_slo_two_sweeps import build_two_sweeps
from tui.app import TokentopApp
from tui.screens.matrix import CompareMatrixScreen


async def test_slo_tab_tells_two_sweeps_of_one_workload_apart(tmp_path):
    build_two_sweeps(tmp_path / "two.duckdb")
    with Store(tmp_path / "two.duckdb") as store:
        app = TokentopApp(store=store, autostart=False, db_label="two.duckdb")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f7")
            screen = app.screen
            assert isinstance(screen, CompareMatrixScreen)
            await pilot.press("o")  # cost at the default SLO
            assert screen.query_one(TabbedContent).active == "tab-slo"
            levels = screen.query_one("#slo-levels", DataTable)
            await wait_for(pilot, lambda: levels.row_count == 6, 30, "the six levels")
            names = [str(levels.get_row_at(i)[1]) for i in range(levels.row_count)]
            assert names == ["#1 c=1", "#1 c=2", "#1 c=4", "#2 c=1", "#2 c=2", "#2 c=4"], names
