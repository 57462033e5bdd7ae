"""The app against the real embedded engine (the shared session): Live, Suite, History, side by side."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input

from tests.support.tui_support import TINY_SUITE, settle
from tests.support.wait import wait_for
from tui.app import TokentopApp
from tui.widgets.gauges import GaugePanel
from tui.widgets.stream_view import StreamView

pytestmark = pytest.mark.timeout(300)


async def test_live_prompt_streams_text_and_gauges(session, store):
    app = TokentopApp(session=session, store=store, db_label="test.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        live = app.screen
        assert live.id == "live"
        live.query_one("#live-max-tokens", Input).value = "24"
        assert app.focused.id == "live-prompt"
        await pilot.press(*"Count to ten.")
        await pilot.press("enter")
        gauges = live.query_one(GaugePanel)
        await wait_for(pilot, lambda: live.last_run_id is not None, timeout=60.0)
        text = live.query_one(StreamView).text
        assert text.strip(), "streamed text is shown"
        assert gauges.peak_tps_now > 0, "tokens/s now moved while tokens arrived"
        final = gauges.last
        assert final.done and final.tokens > 0 and final.ttft_s > 0 and final.tps_request > 0
        assert final.tpot_s and final.tpot_s > 0
        run_id = live.last_run_id
    run = store.get_run(run_id)
    assert run["kind"] == "interactive" and run["status"] == "completed"
    req = store.get_requests(run_id)[0]
    assert req["output_tokens"] == final.tokens
    assert req["ttft_ms"] == pytest.approx(final.ttft_s * 1000, rel=1e-6)
    assert req["output_text"].strip()


async def run_tiny_suite(pilot, app, suite_path) -> str:
    suite = app.screen
    suite.query_one("#suite-name", Input).value = str(suite_path)
    suite.query_one("#suite-reps", Input).value = "1"
    suite.query_one(DataTable).focus()
    await pilot.press("r")
    await wait_for(pilot, lambda: suite.last_status is not None, timeout=120)
    return suite.last_run_id


async def test_suite_history_and_side_by_side(session, store, tmp_path):
    suite_path = tmp_path / "tiny.toml"
    suite_path.write_text(TINY_SUITE)
    app = TokentopApp(session=session, store=store, db_label="test.duckdb", mode="suite")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert screen.id == "suite"
        first = await run_tiny_suite(pilot, app, suite_path)
        assert screen.last_status == "completed"
        table = screen.query_one(DataTable)
        assert table.row_count == 2
        for case_id in ("a", "b"):
            row = table.get_row(case_id)
            assert str(row[2]) == "1/1"
            assert str(row[-1]) != "–" and float(str(row[-1])) > 0  # TPS
            assert float(str(row[4])) > 0  # TTFT mean
        second = await run_tiny_suite(pilot, app, suite_path)
        assert second != first

        await pilot.press("3")
        history = app.screen
        assert history.id == "history"
        await settle(pilot)
        htable = history.query_one(DataTable)
        assert {first, second} <= {r["run_id"] for r in history.shown}
        assert htable.get_row_index(first) >= 0
        # mark both (cursor starts on the newest), then side by side
        htable.move_cursor(row=htable.get_row_index(second))
        await pilot.press("space")
        htable.move_cursor(row=htable.get_row_index(first))
        await pilot.press("space")
        assert history.marked == [second, first]
        await pilot.press("d")
        await settle(pilot)
        sbs = app.screen
        assert type(sbs).__name__ == "SideBySideScreen"
        assert [r["run_id"] for r in sbs.runs] == [second, first]
        labels = [str(sbs.query_one(DataTable).get_row_at(i)[0]).strip() for i in range(sbs.query_one(DataTable).row_count)]
        assert any("a b1 TPS" in label for label in labels) and any("b b1 TPS" in label for label in labels)
        await pilot.press("escape")
        assert app.screen is history
        await settle(pilot)
        # Enter opens the run detail
        htable.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert type(app.screen).__name__ == "RunDetailScreen"
    run = store.get_run(first)
    assert run["status"] == "completed" and set(run["summary"]["cases"]) == {"a", "b"}


async def test_history_open_during_a_generation_shows_the_run_when_it_is_stored(session, store):
    app = TokentopApp(session=session, store=store, db_label="test.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        live = app.screen
        live.query_one("#live-max-tokens", Input).value = "160"  # still streaming when History opens
        live.query_one("#live-prompt", Input).value = "Write a long story about a dragon."
        await pilot.press("enter")
        await wait_for(pilot, lambda: live.query_one(GaugePanel).last.tokens >= 1, timeout=60.0)
        live.query_one(StreamView).focus()
        await pilot.press("f4")  # Live is for typing: a digit goes to the prompt, the F-keys switch screens
        history = app.screen
        assert history.id == "history"
        await settle(pilot)
        table = history.query_one(DataTable)
        assert table.row_count == 0  # not stored yet: the request is still streaming
        await wait_for(pilot, lambda: table.row_count == 1, timeout=60)
