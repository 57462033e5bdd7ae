"""The first hour in the app at 80x24, without an engine (Pilot): every screen's text whole or scrolling
(Help too), nothing cut to '…', one set of figures for a run everywhere (a stopped generation too),
batch-1 TPS apart from per-user speed, shortcut letters that never fire from a screen for typing, stop
keys that work from a field, charts that label every bar, and the Load form's rough edges."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from textual.widgets import DataTable, Input, TabbedContent

from tests.support.first_hour_support import add_load_sweep, add_stopped_generation, cut_numbers, screen_text
from tests.support.tui_support import FakeSession, fixed_store, settle
from tests.support.wait import wait_for, wait_steady
from tui.app import TokentopApp
from tui.screens.compare import CompareScreen
from tui.screens.help import HelpScreen
from tui.screens.load import LoadScreen
from tui.screens.prices import PricesScreen
from tui.screens.run_detail import RunDetailScreen
from tui.screens.side_by_side import SideBySideScreen
from tui.screens.suite import SuiteScreen

RUN_A, RUN_B, RUN_C = "20250301-120000-aaaaaa", "20250302-090000-bbbbbb", "20250303-180000-cccccc"


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Two suites, an interactive run, a sweep (c=1, c=8 with TTFT 3735 ms) and a stopped generation."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    store = fixed_store(tmp_path / "first.duckdb")
    levels = add_load_sweep(store, started=datetime(2025, 3, 5, 9, 0, tzinfo=timezone.utc))
    stopped = add_stopped_generation(store)
    yield SimpleNamespace(store=store, c1=levels[0], c8=levels[1], stopped=stopped)
    store.close()
    monkeypatch.undo()
    time.tzset()


def make_app(world, mode="history"):
    return TokentopApp(store=world.store, session=FakeSession(world.store), autostart=False,
                       db_label="first.duckdb", mode=mode)


def history_row(app, run_id) -> list[str]:
    table = app.screen.query_one("#history-table", DataTable)
    return [c.plain if hasattr(c, "plain") else str(c) for c in table.get_row(run_id)]


def header(app, table_id) -> list[str]:
    table = app.screen.query_one(table_id, DataTable)
    return [str(c.label) for c in table.columns.values()]


async def open_each_screen(app, pilot, world):
    """(name, screen) for every screen, opened by keyboard as a user does."""
    for key, name in (("f2", "live"), ("f3", "suite"), ("f4", "history")):
        await pilot.press(key)
        await settle(pilot)
        yield name, app.screen
    app.screen.query_one("#history-table", DataTable).move_cursor(row=app.screen.shown.index(
        next(r for r in app.screen.shown if r["run_id"] == world.c8)))
    await pilot.press("enter")
    await settle(pilot)
    yield "run detail", app.screen
    await pilot.press("escape")
    await settle(pilot)
    await pilot.press("space", "down", "space", "d")
    await settle(pilot)
    yield "side by side", app.screen
    await pilot.press("escape", "c")
    await settle(pilot)
    yield "costs", app.screen
    await pilot.press("f5")
    await settle(pilot)
    yield "prices", app.screen
    await pilot.press("f6")
    await settle(pilot)
    yield "load", app.screen
    await pilot.press("f7")
    await settle(pilot)
    yield "compare", app.screen
    await pilot.press("o")
    await settle(pilot)
    yield "compare SLO", app.screen


# -- text whole at 80x24 ---------------------------------------------------------------------------------
async def test_no_screen_cuts_a_number_or_its_footer_at_80x24(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        seen = []
        async for name, _screen in open_each_screen(app, pilot, world):
            seen.append(name)
            text = screen_text(app)
            assert not cut_numbers(text), (name, cut_numbers(text))
            footer = text.splitlines()[-1]
            assert "F10 Quit" in footer, (name, footer)  # Compare's footer said "F10 Qui"
        assert len(seen) == 10


async def test_help_scrolls_on_every_screen_and_names_it_in_words(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        async for name, _screen in open_each_screen(app, pilot, world):
            if name == "compare SLO":
                await pilot.press("escape")  # leave the SLO field: F1 works from it too, but keep the tab
            await pilot.press("f1")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 10, f"Help over {name}")
            await wait_steady(pilot)
            assert isinstance(app.screen, HelpScreen), name
            title = app.screen.title_text
            assert not re.search(r"[a-z][A-Z]", title), (name, title)  # "Run detail", never "RunDetail"
            last = app.screen.rows()[-1][1]  # the last row Help has (the command palette)
            for _ in range(30):  # scroll to the end: every row can be read at 80x24
                if last.split(":")[0] in screen_text(app):
                    break
                await pilot.press("pagedown")
                await pilot.wait_for_scheduled_animations()  # the scroll done
            assert last.split(":")[0] in screen_text(app), (name, screen_text(app))
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, HelpScreen), 10, "Help to close")
            assert not isinstance(app.screen, HelpScreen)


async def test_the_slo_tab_shows_a_3735_ms_ttft_whole(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f7", "o")
        screen = app.screen
        levels = screen.query_one("#slo-levels", DataTable)
        await wait_for(pilot, lambda: screen.slo is not None and screen.matrix is not None, timeout=20.0)
        for _ in range(3):  # one workload at a time: the sweep's is the random-tokens one (k: the next)
            await settle(pilot)
            if levels.row_count == 2:
                break
            await pilot.press("escape", "k")
        await wait_for(pilot, lambda: levels.row_count == 2, timeout=20.0)
        await settle(pilot)
        text = screen_text(app)
        assert "3735" in text and not cut_numbers(text)
        why = next(str(row[-1]) for row in (levels.get_row_at(i) for i in range(levels.row_count))
                   if str(row[1]) == "c=8")
        assert why == "no: p99 TTFT 3735 ms > 500 ms"
        # The reason wraps inside its column (the row grows), so none of it is past the edge.
        words = " ".join(line.strip() for line in text.splitlines())
        assert "p99 TTFT 3735 ms >" in words and "500 ms" in words


async def test_the_suite_final_line_keeps_the_whole_run_id(world):
    app = make_app(world, "suite")
    async with app.run_test(size=(80, 24)) as pilot:
        suite = app.screen
        assert isinstance(suite, SuiteScreen)
        suite.metrics = [SimpleNamespace(success=True)] * 30
        suite._finished(SimpleNamespace(result=SimpleNamespace(status="completed"), total=30,
                                        run_id="20250301-120000-aaaaaa"))
        await wait_for(pilot, lambda: "20250301-120000-aaaaaa" in screen_text(app), 10, "the final line")
        assert "completed: 30/30 requests · run 20250301-120000-aaaaaa" in " ".join(
            line.strip() for line in screen_text(app).splitlines())


async def test_the_load_live_line_keeps_every_count(world):
    from engine.load.driver import LoadSnapshot
    from tui.screens.load import live_text

    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f6")
        await settle(pilot)
        snap = LoadSnapshot(level="concurrency 128", level_index=0, levels_total=1, sent=1234, in_flight=128,
                            completed=1050, failed=56, stopped=0, output_throughput=12345.6, ttft_p50_ms=3735.0,
                            ttft_p99_ms=12001.0, elapsed_s=30.0)
        app.screen.query_one("#load-live").update(live_text(snap, "134k/158k tok · ETA 0:04"))
        await wait_for(pilot, lambda: "ETA 0:04" in screen_text(app), 10, "the live line")
        text = screen_text(app)
        for part in ("concurrency 128", "sent 1234", "in flight 128", "done 1050", "failed 56", "12345.6",
                     "3735/12001 ms", "ETA 0:04"):
            assert part in text, part


async def test_history_marked_line_keeps_both_ids(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("space", "down", "space")
        await wait_for(pilot, lambda: "c costs" in " ".join(line.strip() for line in screen_text(app).splitlines()),
                       10, "the marked line")
        words = " ".join(line.strip() for line in screen_text(app).splitlines())
        marked = app.screen.marked
        assert len(marked) == 2 and all(run_id in words for run_id in marked) and "c costs" in words


# -- one set of figures per run; batch-1 TPS apart from per-user speed --------------------------------------
async def test_history_puts_batch1_tps_and_per_user_speed_in_their_own_columns(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        cols = header(app, "#history-table")
        assert cols[:6] == ["✓", "date", "what", "b1 TPS", "user tok/s", "TTFT ms"]
        c8, c1, suite = history_row(app, world.c8), history_row(app, world.c1), history_row(app, RUN_A)
        assert c8[2] == "load c=8" and c8[3] == "–" and c8[4] != "–"
        assert c1[2] == "load c=1" and c1[3] != "–" and c1[4] == "–"
        assert suite[2] == "suite seed" and suite[3] == "106.2" and suite[4] == "–"
        # Sorting by batch-1 TPS never ranks a per-user speed among them: the c=8 level goes last.
        await pilot.press("s")
        shown = [r["run_id"] for r in app.screen.shown]
        assert shown[0] == RUN_A and shown[-1] == world.c8


async def test_a_stopped_generation_reads_the_same_in_history_detail_and_charts(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        row = history_row(app, world.stopped)
        summary = world.store.get_run(world.stopped)["summary"]["overall"]
        assert row[3] == f"{summary['mean_tps']:.1f}" and row[5] == f"{summary['mean_ttft_ms']:.0f}" == "120"
        app.screen.query_one("#history-table", DataTable).move_cursor(
            row=[r["run_id"] for r in app.screen.shown].index(world.stopped))
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        await pilot.press("tab")  # the TPS tab: its one request is drawn
        await wait_for(pilot, lambda: detail.query_one(TabbedContent).active == "tab-tps", 10, "the TPS tab")
        await wait_steady(pilot)
        assert detail.query_one(TabbedContent).active == "tab-tps"
        assert "not shown" not in screen_text(app)
        await pilot.press("tab")  # ITL: the 11 gaps of its 12 chunks, as the summary's ITL p99 counts them
        await wait_for(pilot, lambda: "ITL distribution" in screen_text(app), 10, "the ITL chart")
        assert "ITL distribution, 11 gaps" in screen_text(app)


async def test_side_by_side_keeps_the_two_speeds_apart(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.marked = [RUN_A, world.c8]
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, SideBySideScreen)
        table = app.screen.query_one("#sbs-table", DataTable)
        rows = {str(table.get_row_at(i)[0]).strip("≠ ").strip(): [str(c) for c in table.get_row_at(i)[1:]]
                for i in range(table.row_count)}
        assert rows["short b1 TPS"][0] != "–" and rows["short b1 TPS"][1] == "–"
        assert rows["concurrency 8 user tok/s"][1] != "–" and rows["concurrency 8 user tok/s"][0] == "–"
        assert not any("{" in v for vals in rows.values() for v in vals)  # no raw JSON (engine args)


async def test_run_detail_shows_its_tab_keys_and_no_raw_json(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.screen.query_one("#history-table", DataTable).move_cursor(
            row=[r["run_id"] for r in app.screen.shown].index(RUN_A))  # a suite run: it has engine args
        await pilot.press("enter")
        await settle(pilot)
        text = screen_text(app)
        assert "⇥ Next tab" in text.splitlines()[-1]
        assert '{"' not in text and "enforce_eager=yes" in text
        tabs = app.screen.query_one(TabbedContent)
        for expected in ("tab-tps", "tab-itl", "tab-tokens", "tab-summary"):
            await pilot.press("tab")
            assert tabs.active == expected


# -- keys -----------------------------------------------------------------------------------------------------
async def test_the_slo_tab_focuses_its_field_and_typing_never_fires_a_shortcut(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        theme = app.theme
        await pilot.press("f7", "o")
        screen = app.screen
        assert isinstance(app.focused, Input) and app.focused.id == "slo-input"
        await pilot.press(*"ttft=4000,tpot=80", "enter")
        assert app.screen is screen and app.theme == theme  # no t (theme), no f (tab), no p, no q
        assert screen.query_one("#slo-input", Input).value == "ttft=4000,tpot=80"
        assert screen.query_one(TabbedContent).active == "tab-slo"
        # Even out of the field (Esc), a letter on this tab goes into the field, never to the app.
        await pilot.press("escape", "q")
        assert app.is_running and app.screen is screen and app.focused.id == "slo-input"
        # A click on the tab focuses the field too.
        await pilot.press("escape", "m")
        assert screen.query_one(TabbedContent).active == "tab-matrix"
        screen.query_one(TabbedContent).active = "tab-slo"
        await wait_for(pilot, lambda: getattr(app.focused, "id", None) == "slo-input", 10, "the SLO field's focus")
        assert app.focused.id == "slo-input"


async def test_the_live_screen_is_for_typing(world):
    app = make_app(world, "live")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape")  # out of the prompt
        assert not isinstance(app.focused, Input)
        await pilot.press("q", "t", "p")
        assert app.is_running and app.screen.id == "live"
        assert app.screen.query_one("#live-prompt", Input).value == "qtp"


async def test_load_start_and_stop_keys_work_from_a_field(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f6")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, LoadScreen)
        for field in ("#load-levels", "#load-slo", "#load-burstiness"):
            screen.query_one(field, Input).focus()
            await settle(pilot)
            keys = {b.binding.key for b in app.active_bindings.values()}
            assert {"ctrl+x", "ctrl+r"} <= keys, (field, keys)
            footer = screen_text(app).splitlines()[-1]
            assert "^x Stop" in footer and "^r Start" in footer, (field, footer)
        stopped = []
        screen.stop_run = lambda: stopped.append(True) or True
        screen.query_one("#load-levels", Input).focus()
        await pilot.press("ctrl+x")
        assert stopped and screen.query_one("#load-levels", Input).value == "1,2,4"  # not cut


async def test_the_load_form_defaults_and_checks_as_you_type(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f6")
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#load-output-len", Input).value == "128"  # vLLM's default, as `tokentop load`
        slo = screen.query_one("#load-slo", Input)
        assert slo.value == "" and slo.placeholder.startswith("none")  # not a value that looks set
        burst = screen.query_one("#load-burstiness", Input)
        burst.focus()
        burst.value = ""
        await pilot.press(*"abc")
        await wait_for(pilot, lambda: burst.has_class("-invalid"), 10, "the field marked invalid")
        assert burst.has_class("-invalid")
        assert "burstiness 'abc' is not a number" in str(screen.query_one("#load-status").render())
        await pilot.press("backspace", "backspace", "backspace", "2")
        await wait_for(pilot, lambda: not burst.has_class("-invalid"), 10, "the field valid again")
        assert not burst.has_class("-invalid")


# -- charts -------------------------------------------------------------------------------------------------
def test_a_bar_chart_labels_every_bar_and_names_what_it_leaves_out():
    from tui.widgets.bar_chart import Bar, bar_lines

    bars = [Bar(f"provider {i} H100-SXM-80", 1.0 + i) for i in range(12)]
    lines = [t.plain for t in bar_lines("$/1M", bars, width=60, height=7, digits=2, order="the cheapest")]
    assert len(lines) == 7
    drawn = lines[1:-1]
    assert all(line.startswith("provider ") and re.search(r"\d+\.\d\d$", line) for line in drawn)
    assert lines[-1].startswith("5 of 12 shown: the cheapest; 7 left out")
    assert not cut_numbers("\n".join(lines))


async def test_the_costs_charts_label_every_bar(world):
    from tui.widgets.bar_chart import BarChart

    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, CompareScreen)
        for chart in app.screen.query(BarChart):
            lines = chart.lines
            assert all(re.search(r"\S.* █*\s+[\d.]+$", line) for line in lines[1:] if "shown" not in line), lines


async def test_the_itl_histogram_starts_at_zero(world):
    app = make_app(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        app.screen.query_one(TabbedContent).active = "tab-itl"
        await wait_for(pilot, lambda: "└" in screen_text(app), 10, "the ITL chart's frame")
        await wait_steady(pilot)  # drawn and laid out
        lines = screen_text(app).splitlines()
        bottom = max(i for i, line in enumerate(lines) if "└" in line)
        axis = lines[bottom + 1]  # the x axis' tick labels, under the frame
        ticks = [float(t) for t in re.findall(r"-?\d+(?:\.\d+)?", axis)]
        assert ticks and min(ticks) == 0 and all(len(t) <= 6 for t in re.findall(r"\d+(?:\.\d+)?", axis)), axis


# -- start-up and prices ------------------------------------------------------------------------------------------
async def test_start_up_steps_are_visible_at_80_columns(world):
    from tui.messages import EngineProgress

    app = TokentopApp(store=world.store, autostart=False, db_label="first.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        app.engine_state = "starting"
        for message, step in (("importing vLLM", "importing vLLM"),
                              ("vLLM 0.32.0 imported in 6.1s; loading /root/.cache/tokentop/models/SmolLM2", "loading the model"),
                              ("warming up", "warming up")):
            app.post_message(EngineProgress(message))
            await wait_for(pilot, lambda: step in (top := screen_text(app).splitlines()[0])  # noqa: B023
                           and re.search(r"\d+ s", top), 10, f"{step!r} on the top line")
            top = screen_text(app).splitlines()[0]
            assert step in top and re.search(r"\d+ s", top), top


async def test_an_offline_refresh_says_it_failed_on_the_prices_screen(world):
    from textual.app import App

    closed = "http://127.0.0.1:9"
    env = {"TOKENTOP_RUNPOD_URL": closed, "TOKENTOP_VASTAI_URL": closed, "TOKENTOP_VULTR_URL": closed,
           "TOKENTOP_LAMBDA_URL": closed, "TOKENTOP_LAMBDA_CATALOG_URL": closed}

    class Host(App):
        def on_mount(self):
            self.push_screen(PricesScreen(world.store, env=env))

    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.board is not None, timeout=20.0)
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.refreshing, timeout=20.0)
        message = str(screen.query_one("#prices-message").render())
        assert "refresh failed: 4 of 4 live fetches failed" in message, message
        states = {s.provider: s.state for s in screen.board.statuses.values()}
        assert set(states.values()) == {"stale"}  # CoreWeave's 2024 table too: one rule for every source
