"""The app without an engine: SVG snapshots of every screen (fixed data, 80x24 and 140x40),
the default suite, navigation, command palette entries, and markup/ANSI/long-line safety."""

from __future__ import annotations

import time

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input

from engine.types import Chunk
from tests.support.tui_support import FakeSession, fixed_store, settle
from tests.support.wait import wait_for, wait_steady
from tui.app import TokentopApp
from tui.widgets.gauges import GaugePanel
from tui.widgets.stream_view import StreamView

SIZES = [(80, 24), (140, 40)]
RUN_A, RUN_B, RUN_C = "20250301-120000-aaaaaa", "20250302-090000-bbbbbb", "20250303-180000-cccccc"


@pytest.fixture
def fixed(tmp_path, utc):
    store = fixed_store(tmp_path / "fixed.duckdb")
    yield store
    store.close()


def make_app(store, mode="live") -> TokentopApp:
    return TokentopApp(store=store, autostart=False, db_label="fixed.duckdb", mode=mode)


# -- snapshots -------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_live(snap_compare, fixed, size):
    assert snap_compare(make_app(fixed, "live"), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_suite(snap_compare, fixed, size):
    assert snap_compare(make_app(fixed, "suite"), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_history(snap_compare, fixed, size):
    assert snap_compare(make_app(fixed, "history"), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("tab", ["summary", "tps", "itl", "tokens"])
def test_snapshot_run_detail(snap_compare, fixed, size, tab):
    async def open_detail(pilot):
        await settle(pilot)
        await pilot.press("enter")  # the newest run (C)
        await settle(pilot)
        pilot.app.screen.query_one("TabbedContent").active = f"tab-{tab}"
        await pilot.pause()

    app = make_app(fixed, "history")
    assert snap_compare(app, terminal_size=size, run_before=open_detail)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_side_by_side(snap_compare, fixed, size):
    async def open_sbs(pilot):
        # sorted newest first: C, B, A -> mark B and A
        await settle(pilot)
        await pilot.press("down", "space", "space", "d")
        await settle(pilot)

    assert snap_compare(make_app(fixed, "history"), terminal_size=size, run_before=open_sbs)


def test_snapshot_load_form(snap_compare, fixed):
    """Every field labelled, every value and placeholder whole (1,2,4 · random · 128 · 128 · auto · ttft=500,tpot=50)."""
    async def open_load(pilot):
        await pilot.press("f6")
        await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "LoadScreen", what="the Load screen")
        await wait_steady(pilot)

    app = TokentopApp(store=fixed, session=FakeSession(fixed), autostart=False, db_label="fixed.duckdb")
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_load)


@pytest.mark.parametrize("mode", ["live", "history"])
def test_snapshot_help(snap_compare, fixed, mode):
    async def open_help(pilot):
        await settle(pilot)
        await pilot.press("f1")
        await settle(pilot)

    assert snap_compare(make_app(fixed, mode), terminal_size=(80, 24), run_before=open_help)


def test_snapshot_run_detail_other_columns(snap_compare, fixed):
    async def open_detail(pilot):
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("v")  # the columns that did not fit at 80 wide
        await settle(pilot)

    assert snap_compare(make_app(fixed, "history"), terminal_size=(80, 24), run_before=open_detail)


# -- nothing cut at 80x24 --------------------------------------------------------------
def cut_cells(table: DataTable) -> list[str]:
    """Cells (and headers) wider than their column, or columns past the table's right edge."""
    problems = []
    columns = list(table.columns.values())
    edge = table.scrollable_content_region.width
    if sum(c.get_render_width(table) for c in columns) > edge:
        problems.append(f"{table.id}: columns {[str(c.label) for c in columns]} overflow {edge} cells")
    heights = [row.height for row in table.ordered_rows]
    for index, column in enumerate(columns):
        room = column.get_render_width(table) - 2 * table.cell_padding
        values = [(column.label, table.header_height)] + [
            (table.get_row_at(r)[index], heights[r]) for r in range(table.row_count)]
        for value, height in values:
            text = value if isinstance(value, Text) else Text(str(value))
            # A value may wrap onto the lines its row has (rows added with height=None grow to fit it).
            lines = len(text.wrap(table.app.console, max(1, room))) if height > 1 else 1
            if text.cell_len > room * (height if lines <= height else 0):
                problems.append(f"{table.id}: {text.plain!r} in a {room}-cell column {str(column.label)!r}")
    return problems


async def screens_at_80x24(app, pilot):
    """Yield (name, screen) for every screen, opened the way a user opens it."""
    from tui.screens.help import HelpScreen
    from tui.screens.load import LoadScreen
    from tui.screens.run_detail import RunDetailScreen
    from tui.screens.side_by_side import SideBySideScreen

    async def shown(check, what: str) -> None:
        await wait_for(pilot, check, what=what)
        await wait_steady(pilot)  # laid out and drawn

    def has_rows(table_id: str) -> bool:
        return bool(app.screen.query(table_id) and app.screen.query_one(table_id).row_count)

    for mode in ("live", "suite", "history"):
        await app.switch_mode(mode)
        await shown(lambda: True, mode)
        yield mode, app.screen
    await pilot.press("enter")  # the newest run's detail
    await shown(lambda: isinstance(app.screen, RunDetailScreen), "the run detail")
    yield "run detail", app.screen
    await pilot.press("v")
    await shown(lambda: True, "the other columns")
    yield "run detail, other columns", app.screen
    await pilot.press("escape", "down", "space", "down", "space", "d")
    await shown(lambda: isinstance(app.screen, SideBySideScreen), "side by side")
    yield "side by side", app.screen
    await pilot.press("escape", "c")
    await shown(lambda: has_rows("#compare-table"), "the costs' rows")
    yield "costs", app.screen
    await pilot.press("f5")
    await shown(lambda: has_rows("#prices-table"), "the prices' rows")
    yield "prices", app.screen
    await pilot.press("f6")
    await shown(lambda: isinstance(app.screen, LoadScreen), "the Load screen")
    yield "load", app.screen
    await pilot.press("f1")
    await shown(lambda: isinstance(app.screen, HelpScreen), "Help")
    yield "help", app.screen


async def test_no_screen_cuts_a_number_or_a_header_at_80x24(fixed):
    from tui.screens.load import LoadScreen

    app = TokentopApp(store=fixed, session=FakeSession(fixed), autostart=False, db_label="fixed.duckdb")
    async with app.run_test(size=(80, 24)) as pilot:
        seen = []
        async for name, screen in screens_at_80x24(app, pilot):
            seen.append(name)
            problems = []
            for table in screen.query(DataTable):
                if table.display and table.region.width:
                    problems += cut_cells(table)
            status = screen.query("StatusBar")
            if status:
                line = status.first().render()
                assert line.cell_length <= 80 and not line.plain.endswith("…"), (name, line.plain)
            assert not problems, (name, problems)
            if isinstance(screen, LoadScreen):  # every field shows its whole value or placeholder
                for field in screen.query(Input):
                    if not all(node.display for node in field.ancestors_with_self if hasattr(node, "display")):
                        continue  # another workload's field (tests/engine/test_load_screen_workloads.py checks each workload's)
                    shown = field.value or field.placeholder
                    assert len(shown) < field.content_region.width, (field.id, shown, field.content_region)
        assert len(seen) == 10


# -- behaviour without an engine -------------------------------------------------------
async def test_seed_suite_is_the_default(fixed):
    app = make_app(fixed, "suite")
    async with app.run_test(size=(80, 24)):
        screen = app.screen
        assert screen.query_one("#suite-name", Input).value == "seed"
        assert screen.suite.name == "seed"
        assert screen.query_one("#suite-reps", Input).placeholder == "10"
        table = screen.query_one(DataTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["short", "medium", "long"]


async def test_navigation_and_history_sort_filter(fixed):
    app = make_app(fixed, "history")
    async with app.run_test(size=(80, 24)) as pilot:
        history = app.screen
        await settle(pilot)
        assert [r["run_id"] for r in history.shown] == [RUN_C, RUN_B, RUN_A]
        await pilot.press("s")  # by TPS, highest first
        assert [r["run_id"] for r in history.shown] == [RUN_A, RUN_B, RUN_C]
        await pilot.press("f", *"a100")
        assert [r["run_id"] for r in history.shown] == [RUN_B]
        await pilot.press("escape")
        assert isinstance(app.focused, DataTable)
        await pilot.press("d")  # fewer than two marked: a warning, no screen change
        assert app.screen is history
        await pilot.press("1")
        assert app.screen.id == "live"
        await pilot.press("escape", "2")  # Live is for typing: a digit goes to the prompt, even out of it
        assert app.screen.id == "live" and app.screen.query_one("#live-prompt", Input).value == "2"
        await pilot.press("f3")  # the F-keys switch from anywhere
        assert app.screen.id == "suite"
        await pilot.press("3")
        assert app.screen is history
        await settle(pilot)  # back on History: it reads the runs again


async def test_every_binding_has_an_id_and_a_palette_entry(fixed):
    app = make_app(fixed, "history")
    async with app.run_test(size=(80, 24)) as pilot:
        for mode in ("live", "suite", "history"):
            await app.switch_mode(mode)
            await pilot.pause()
            screen = app.screen
            titles = [title for title, _help, _run in app.palette_commands(screen)]
            for b in [*type(screen).BINDINGS, *TokentopApp.BINDINGS]:
                assert b.id and b.description, b
            for b in type(screen).BINDINGS:
                assert any(t.startswith(b.description) for t in titles), (mode, b.description)


async def test_quit_key_exits_with_zero(fixed):
    app = make_app(fixed, "history")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("q")
    assert app.return_code == 0


EVIL = (
    "[bold red]x[/] [link=http://evil]click[/link] :smile: "
    "\x1b[31mred\x1b[0m \x1b]0;pwned\x07\x1b[2J\x1b[H\rover\x00write "
    + "A" * 3000 + "\n" + "word " * 400 + "\ttab"
)


async def test_markup_ansi_and_long_lines_are_shown_literally(fixed):
    app = make_app(fixed, "live")
    async with app.run_test(size=(80, 24)) as pilot:
        live = app.screen
        stream = live.query_one(StreamView)
        gauges = live.query_one(GaugePanel)
        before = (stream.region, gauges.region)
        from engine.orchestrator import ChunkArrived, Job, JobStarted, RequestStarted, RunWatcher
        from engine.types import GenerationRequest

        # a request as the app's run watcher sees it (no engine needed)
        job, watcher = Job("interactive"), RunWatcher()
        app.runs.watcher = watcher
        watcher(JobStarted(job))
        watcher(RequestStarted("r", job.job_id, 0, 1, GenerationRequest("x", 8), time.perf_counter_ns()))
        # split the escape sequences across chunks, as a real stream may
        for i in range(0, len(EVIL), 7):
            watcher(ChunkArrived("r", job.job_id, 0, Chunk(time.perf_counter_ns(), EVIL[i:i + 7], 1)))
        live.tick()
        await pilot.pause()
        shown = stream.text
        assert shown.startswith("[bold red]x[/] [link=http://evil]click[/link] :smile: red ")
        assert "\x1b" not in shown and "\r" not in shown and "\x00" not in shown and "\x07" not in shown
        assert "overwrite" in shown and "A" * 3000 in shown and "    tab" in shown
        # plain text: every character drawn, no markup applied (no bold, no link: one style)
        assert "".join(stream.lines).replace(" ", "") == shown.replace("\n", "").replace(" ", "")
        drawn = {(s.style.bold, s.style.color) for y in range(stream.size.height)
                 for s in stream.render_line(y) if s.text.strip()}
        assert len(drawn) == 1 and not drawn.pop()[0]
        assert all(s.style.link is None for y in range(stream.size.height) for s in stream.render_line(y))
        # the layout did not move and nothing overflows sideways
        assert (stream.region, gauges.region) == before
        assert stream.virtual_size.width <= stream.size.width
        stream.scroll_home(animate=False)
        await pilot.pause()
        svg = app.export_screenshot()
        assert "[bold&#160;red]x[/]" in svg or "[bold red]x[/]" in svg
        assert "pwned" not in svg
