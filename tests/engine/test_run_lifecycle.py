"""The app owns its runs: suite gauges show each request's own figures, and every way out of the app
(q, Ctrl+Q, Ctrl+C, the palette's Quit, Esc then q on the Load screen) stops the running suite or load
and stores it as aborted with the requests that finished. Real engine (the shared session)."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import DataTable, Input

from tests.support.wait import wait_for
from tui.app import TokentopApp
from tui.widgets.gauges import GaugePanel

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]

SHORT_SUITE = """
name = "short"
reps = 3
temperature = 0.8
enforce_length = true

[[cases]]
id = "a"
prompt = "Say hello."
output_tokens = {tokens}
"""


async def wait_exit(app, timeout: float = 30.0) -> None:
    """Until the app has exited (its quit stops and stores the run first). The bound is generous:
    what the test checks is that the run did not go on to complete."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while app.return_code is None:
        assert loop.time() < end, "the app did not exit"
        await asyncio.sleep(0.05)


def suite_file(tmp_path, tokens: int, reps: int = 3):
    path = tmp_path / "short.toml"
    path.write_text(SHORT_SUITE.format(tokens=tokens).replace("reps = 3", f"reps = {reps}"))
    return path


async def start_suite(pilot, app, path, reps: int) -> None:
    screen = app.screen
    assert screen.id == "suite"
    screen.query_one("#suite-name", Input).value = str(path)
    screen.query_one("#suite-reps", Input).value = str(reps)
    screen.query_one(DataTable).focus()
    await pilot.press("r")


async def test_suite_gauges_show_each_requests_own_ttft_and_elapsed(session, store, tmp_path):
    path = suite_file(tmp_path, tokens=12)
    app = TokentopApp(session=session, store=store, db_label="test.duckdb", mode="suite")
    async with app.run_test(size=(80, 24)) as pilot:
        panel = app.screen.query_one(GaugePanel)
        shown = []
        original = panel.show

        def record(snap):
            # a request's final gauges, once each (a later tick shows them again, with no new text)
            if snap.done and (snap.ttft_s, snap.elapsed_s) not in {(s.ttft_s, s.elapsed_s) for s in shown}:
                shown.append(snap)
            original(snap)

        panel.show = record
        await start_suite(pilot, app, path, 3)
        await wait_for(pilot, lambda: app.screen.last_status is not None, timeout=90.0)
        assert app.screen.last_status == "completed"
        run_id = app.screen.last_run_id
    rows = store.get_requests(run_id)
    assert len(rows) == 3
    finals = [s for s in shown if s.tokens == 12]
    assert len(finals) == 3, finals  # each request's own final gauges were shown, in order
    for row, snap in zip(rows, finals):
        # request 2 and 3 too: that request's own TTFT and elapsed (E2EL), not the previous one's
        assert snap.ttft_s * 1000 == pytest.approx(row["ttft_ms"], rel=1e-6)
        assert snap.elapsed_s * 1000 == pytest.approx(row["e2el_ms"], rel=1e-6)
        assert snap.tps_request == pytest.approx(row["tps"], rel=1e-6)


QUIT_KEYS = {
    "q": ["q"],
    "ctrl+q": ["ctrl+q"],
    "ctrl+c": ["ctrl+c"],
    "palette": ["ctrl+p", *"quit", "enter"],
}


@pytest.mark.parametrize("way", list(QUIT_KEYS))
async def test_quitting_during_a_suite_stores_it_aborted(way, session, store, tmp_path):
    path = suite_file(tmp_path, tokens=16, reps=30)
    app = TokentopApp(session=session, store=store, db_label="test.duckdb", mode="suite")
    async with app.run_test(size=(80, 24)) as pilot:
        await start_suite(pilot, app, path, 30)
        await wait_for(pilot, lambda: app.runs.view("suite") is not None and len(app.runs.view("suite").records) >= 2, timeout=90.0)
        await pilot.press(*QUIT_KEYS[way])
        await wait_for(pilot, lambda: app.quitting, timeout=10)
        assert "stopping…, storing run" in app.screen.said[0]  # said while it stops and stores
        await wait_exit(app)
    (run,) = store.list_runs()
    assert run["kind"] == "suite" and run["status"] == "aborted"
    rows = store.get_requests(run["run_id"])
    finished = [r for r in rows if r["success"]]
    assert len(finished) >= 2 and all(r["output_tokens"] == 16 for r in finished)
    assert len(rows) < 30  # stopped, not run to the end


async def start_load(pilot, app) -> None:
    from tui.screens.load import LoadScreen

    await pilot.press("l")
    await wait_for(pilot, lambda: isinstance(app.screen, LoadScreen), timeout=10)
    screen = app.screen
    screen.query_one("#load-levels", Input).value = "1,2"
    screen.query_one("#load-input-len", Input).value = "16"
    screen.query_one("#load-output-len", Input).value = "16"
    screen.query_one("#load-num-prompts", Input).value = "30"
    screen.query_one("#load-start").focus()
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: app.runs.current is not None and app.runs.current.live.completed >= 2, timeout=90.0)


LOAD_WAYS = {
    "q": ["q"],
    "ctrl+q": ["ctrl+q"],
    "esc-then-q": ["escape", "q"],
    "palette": ["ctrl+p", *"quit", "enter"],
}


async def leave_load_screen(pilot, app) -> None:
    """Esc, as a user presses it: the first leaves a form field if one has focus, the next the screen."""
    from tui.screens.load import LoadScreen

    for _ in range(2):
        if not isinstance(app.screen, LoadScreen):
            return
        await pilot.press("escape")
        await pilot.pause()


@pytest.mark.parametrize("way", list(LOAD_WAYS))
async def test_quitting_during_a_load_stores_it_aborted(way, session, store):
    app = TokentopApp(session=session, store=store, db_label="test.duckdb", mode="suite")
    async with app.run_test(size=(80, 24)) as pilot:
        await start_load(pilot, app)
        keys = LOAD_WAYS[way]
        if keys[0] == "escape":
            await leave_load_screen(pilot, app)
            await wait_for(pilot, lambda: app.screen.id == "suite", timeout=10)
            assert app.runs.current is not None, "Esc leaves the screen; the load goes on in the app"
            keys = keys[1:]
        await pilot.press(*keys)
        await wait_for(pilot, lambda: app.quitting, timeout=10)
        await wait_exit(app)
    runs = store.list_runs()
    assert [r["kind"] for r in runs] == ["load"]  # stopped in level 1 of 2
    (run,) = runs
    assert run["status"] == "aborted"
    rows = store.get_requests(run["run_id"])
    finished = [r for r in rows if r["success"]]
    assert len(finished) >= 2 and all(r["output_tokens"] == 16 for r in finished)
    assert len(finished) < 30


async def test_leaving_the_load_screen_keeps_the_load_and_returning_shows_it(session, store):
    from tui.screens.load import LoadScreen

    app = TokentopApp(session=session, store=store, db_label="test.duckdb", mode="suite")
    async with app.run_test(size=(80, 24)) as pilot:
        await start_load(pilot, app)
        job = app.runs.current
        await leave_load_screen(pilot, app)
        await wait_for(pilot, lambda: app.screen.id == "suite", timeout=10)
        await pilot.press("l")
        await wait_for(pilot, lambda: isinstance(app.screen, LoadScreen), timeout=10)
        screen = app.screen
        assert screen.running and app.runs.current is job  # the same load, still going
        screen.action_stop()
        await wait_for(pilot, lambda: not screen.running, timeout=30)
        assert screen.last_message.startswith("stopped: 1 level(s) stored")
        assert screen.query_one("#load-table", DataTable).row_count == 1
    (run,) = store.list_runs()
    assert run["status"] == "aborted"


async def test_interactive_request_stopped_keeps_what_it_streamed(session, store):
    app = TokentopApp(session=session, store=store, db_label="test.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        live = app.screen
        live.query_one("#live-max-tokens", Input).value = "2000"
        live.query_one("#live-prompt", Input).value = "Write a very long story."
        await pilot.press("enter")
        await wait_for(pilot, lambda: live.query_one(GaugePanel).last.tokens >= 3, timeout=90.0)
        await pilot.press("escape")
        await wait_for(pilot, lambda: live.last_run_id is not None, timeout=30)
        run_id = live.last_run_id
    run = store.get_run(run_id)
    assert run["kind"] == "interactive" and run["status"] == "aborted"
    (req,) = store.get_requests(run_id)
    assert not req["success"] and 3 <= req["output_tokens"] < 2000
    assert req["ttft_ms"] > 0 and req["tps"] > 0 and req["e2el_ms"] > req["ttft_ms"]
    overall = run["summary"]["overall"]
    assert overall["mean_ttft_ms"] == pytest.approx(req["ttft_ms"]) and run["summary"]["partial"]
