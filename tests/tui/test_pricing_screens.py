"""The Prices and Compare screens on a tiny host app: Pilot tests and 80x24 SVG snapshots."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from textual.app import App
from textual.widgets import DataTable, Static

from data.store.database import RequestRow, Store
from tests.support.pricing_support import env_for, price_server, serve_all  # noqa: F401
from tests.support.wait import wait_for, wait_steady
from tui.screens.compare import CompareScreen
from tui.screens.prices import PricesScreen

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)


class Host(App):
    def __init__(self, screen_factory):
        super().__init__()
        self.screen_factory = screen_factory

    def on_mount(self) -> None:
        self.push_screen(self.screen_factory())


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "screens.duckdb") as s:
        yield s


def add_run(store, run_id, device, key, tps):
    env = {"device": device, "gpus": [{"key": key}] if key else []}
    store.start_run(kind="suite", engine="vllm", model="m", environment=env, run_id=run_id)
    for i, t in enumerate(tps):
        store.add_request(run_id, RequestRow(i, "medium", i, NOW, 0.0, "p", 10, 200, 200, 45.0, 200 / t * 1000, 4.0,
                                             t, True, "length", None, "x"))
    store.finish_run(run_id, "completed", duration_s=1.0, summary={})


def cell_texts(table: DataTable) -> list[list[str]]:
    """Every column of every row, including columns paged out of an 80-wide view (PagedTable)."""
    if hasattr(table, "data"):
        return [[str(c) for c in cells] for _key, cells in table.data]
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def wait_rows(pilot, table, n=1):
    await wait_for(pilot, lambda: table.row_count >= n, 30, f"{n} row(s) in #{table.id}")


async def test_prices_screen_shows_snapshot_then_refreshes_without_blocking(store, price_server):
    import time

    from werkzeug import Response

    from tests.support.pricing_support import fixture_json, serve_lambda, serve_vastai, serve_vultr

    def slow(request):
        time.sleep(2.5)  # deliberate: a slow provider, so the refresh is still running while keys are pressed
        return Response(json.dumps(fixture_json("runpod_gpu_types.json")), content_type="application/json")

    price_server.expect_request("/graphql").respond_with_handler(slow)
    serve_vastai(price_server)
    serve_vultr(price_server)
    serve_lambda(price_server)
    app = Host(lambda: PricesScreen(store, now=NOW, env=env_for(price_server)))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one("#prices-table", DataTable)
        await wait_rows(pilot, table)
        status = cell_texts(screen.query_one("#prices-status", DataTable))
        assert [r[1] for r in status] == ["stale"] * 5  # nothing fetched yet; CoreWeave's table dates from 2024
        assert all("snapshot" in r[2] for r in status)
        started = time.monotonic()
        await pilot.press("r")
        await pilot.press("down")  # the UI keeps answering keys while the fetch runs
        assert time.monotonic() - started < 2.0  # well before the 2.5 s fetch ends
        assert screen.refreshing and "Fetching" in str(screen.query_one("#prices-message", Static).render())
        await wait_for(pilot, lambda: not screen.refreshing, 30, "the refresh to end")
        status = cell_texts(screen.query_one("#prices-status", DataTable))
        assert [r[1] for r in status] == ["ok"] * 4 + ["stale"]  # CoreWeave: no API, a dated table from 2024
        assert status[0][2] == "live, 0 s ago"
        assert "refreshed: 4 of 4 live fetches ok" in str(screen.query_one("#prices-message", Static).render())
        gpus = {r[0] for r in cell_texts(table)}
        assert "H100 PCIe 80GB" in gpus and any(g.startswith("? ") for g in gpus)  # unmatched kept


async def test_prices_screen_reports_a_failed_provider(store, price_server):
    price_server.expect_request("/graphql").respond_with_data("<html>", content_type="text/html")
    app = Host(lambda: PricesScreen(store, now=NOW, env=env_for(price_server)))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_rows(pilot, screen.query_one("#prices-table", DataTable))
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.refreshing, 30, "the refresh to end")
        runpod = cell_texts(screen.query_one("#prices-status", DataTable))[0]
        assert runpod[1] == "stale" and "not JSON" in runpod[3]


async def test_compare_screen_sorts_and_highlights_the_cheapest(store):
    add_run(store, "run-h100", "NVIDIA H100 80GB HBM3", "H100-SXM-80", [230.0])
    app = Host(lambda: CompareScreen(store, ["run-h100"], now=NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one("#compare-table", DataTable)
        await wait_rows(pilot, table)
        rows = cell_texts(table)
        assert [str(c.label) for c in table.columns.values()][:7] == [
            "provider", "GPU", "basis", "TPS", "TTFT ms", "$/h", "$/1M"]
        assert rows[0][0].startswith("Vast.ai") and rows[0][6].endswith("◀")  # cheapest first, marked
        assert rows[0][2] == "batch-1"
        costs = [float(r[6].rstrip(" ◀")) for r in rows]
        assert costs == sorted(costs)
        await pilot.press("s")  # sort by $/h
        hourly = [float(r[5]) for r in cell_texts(table)]
        assert hourly == sorted(hourly)
        assert "$/h" in str(screen.query_one("#compare-title", Static).render())


async def test_compare_screen_on_a_cpu_run(store):
    add_run(store, "run-cpu", "CPU", None, [30.0])
    app = Host(lambda: CompareScreen(store, ["run-cpu"], now=NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one("#compare-table", DataTable)
        await wait_rows(pilot, table)
        assert "No provider rents this device (CPU)" in str(screen.query_one("#compare-note", Static).render())
        assert table.row_count == 12 and all(r[9] == "article, 2024" for r in cell_texts(table))


async def test_costs_of_two_runs_list_each_reference_row_once(store):
    add_run(store, "run-cpu-1", "CPU", None, [30.0])
    add_run(store, "run-cpu-2", "CPU", None, [31.0])
    app = Host(lambda: CompareScreen(store, ["run-cpu-1", "run-cpu-2"], now=NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one("#compare-table", DataTable)
        await wait_rows(pilot, table)
        rows = [(r[0], r[1]) for r in cell_texts(table)]
        assert len(rows) == 12 and len(set(rows)) == 12


async def test_compare_screen_load_run_costs_throughput_shows_per_user_speed_and_fits_80_columns(store):
    env = {"device": "NVIDIA H100 80GB HBM3", "gpus": [{"key": "H100-SXM-80"}]}
    store.start_run(kind="load", engine="vllm", model="m", environment=env, run_id="run-load")
    for i in range(2):
        store.add_request("run-load", RequestRow(i, "load", i, NOW, 0.0, "p", 10, 200, 200, 45.0, 5000.0, 4.0, 40.0,
                                                 True, "length", None, "x"))
    store.finish_run("run-load", "completed", duration_s=1.0, summary={"overall": {"output_throughput": 1800.0}})
    app = Host(lambda: CompareScreen(store, ["run-load"], now=NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        table = screen.query_one("#compare-table", DataTable)
        await wait_rows(pilot, table)
        rows = [r for r in cell_texts(table) if r[9] == "run-load"]
        assert {r[2] for r in rows} == {"load"}  # per-request TPS under load is no cost basis (issue 10)
        assert sum(r[6].endswith("◀") for r in rows) == 1
        assert {r[2] for r in cell_texts(table) if r[9] == "article, 2024"} == {"batch-1"}
        note = str(screen.query_one("#compare-note", Static).render())
        assert "throughput under load" in note and "40.0 tok/s per user" in note
        # provider .. $/1M lie inside the 80-column terminal, whole; the rest is one key (v) away
        shown = [str(c.label) for c in table.columns.values()]
        assert shown[:7] == ["provider", "GPU", "basis", "TPS", "TTFT ms", "$/h", "$/1M"]
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= 80 - 2
        await pilot.press("v")
        assert "run" in [str(c.label) for c in table.columns.values()]


def _snap_store(tmp_path):
    store = Store(tmp_path / "snap.duckdb")
    add_run(store, "run-snapshot-h100", "NVIDIA H100 80GB HBM3", "H100-SXM-80", [230.0])
    return store


async def _settle(pilot):
    await wait_for(pilot, lambda: pilot.app.screen.query(DataTable).last().row_count, 30, "the table's rows")
    await wait_steady(pilot)  # the charts have laid out and drawn


def test_prices_screen_snapshot(snap_compare, tmp_path):
    store = _snap_store(tmp_path)
    assert snap_compare(Host(lambda: PricesScreen(store, now=NOW)), terminal_size=(80, 24), run_before=_settle)


def test_compare_screen_snapshot(snap_compare, tmp_path):
    store = _snap_store(tmp_path)
    app = Host(lambda: CompareScreen(store, ["run-snapshot-h100"], now=NOW))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settle)
