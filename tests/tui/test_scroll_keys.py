"""Every screen whose content can exceed 80x24 scrolls from the keyboard (issue 24): the run detail's
Summary at 80x24 held everything below `host` out of reach (↓, PgDn, End did nothing)."""

from __future__ import annotations

import pytest
from textual.containers import VerticalScroll

from tests.support.tui_support import settle
from tests.tui.test_keys import fixed, make_app  # noqa: F401  (fixed: the fixture)
from tui.screens.help import HelpScreen
from tui.screens.run_detail import RunDetailScreen

RUN = "20250301-120000-aaaaaa"  # tests/support/tui_support.py's suite run on an H100


def visible_lines(app) -> list[str]:
    """What the terminal shows, line by line (the compositor's own render)."""
    import io

    from rich.console import Console

    console = Console(width=app.size.width, record=True, file=io.StringIO(), legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text().splitlines()


@pytest.mark.parametrize("keys", [["end"], ["pagedown"] * 12, ["down"] * 60])
async def test_run_detail_summary_scrolls_to_its_last_line_from_the_keyboard(fixed, keys):
    app = make_app(fixed, "history")
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RunDetailScreen(RUN))
        await settle(pilot)
        await pilot.pause()
        summary = app.screen.query_one("#detail-summary", VerticalScroll)
        assert summary.max_scroll_y > 0 and summary.scroll_y == 0  # it does not fit at 80x24
        last = "env gpus"
        assert not any(last in line for line in visible_lines(app))
        await pilot.press(*keys)
        await pilot.pause()
        assert summary.scroll_y == summary.max_scroll_y
        assert any(last in line for line in visible_lines(app)), "\n".join(visible_lines(app))
        await pilot.press("home")
        await pilot.pause()
        assert summary.scroll_y == 0


async def test_summary_scrolls_when_the_tabs_have_focus_and_help_says_how(fixed):
    app = make_app(fixed, "history")
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(RunDetailScreen(RUN))
        await settle(pilot)
        detail = app.screen
        await pilot.press("tab", "shift+tab")  # to the TPS tab and back: the Summary's scroll has focus
        await pilot.pause()
        summary = detail.query_one("#detail-summary", VerticalScroll)
        assert app.focused is summary
        from textual.widgets import Tabs

        detail.query_one(Tabs).focus()  # a click on the tabs
        await pilot.pause()
        await pilot.press("end")
        await pilot.pause()
        assert summary.scroll_y == summary.max_scroll_y > 0
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert any("PgDn" in keys and "End" in keys and "Summary" in text for keys, text in app.screen.rows())
