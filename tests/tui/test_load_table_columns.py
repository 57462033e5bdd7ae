"""The Load screen's results table and `tokentop load`'s table agree (issue 22: "the screen's and the
command's load-table columns already disagree"): for the same levels, the same columns in the same order
with the same figures (tui.cells.LOAD_TABLE_COLUMNS, declared once)."""

from __future__ import annotations

from tests.support.apps import load_screen_started
from tests.support.fake_openai import Reply, ScriptServer, chat, timed, usage, usage_only
from tests.support.wait import wait_for
from tui.widgets.paged_table import PagedTable


def _reply() -> Reply:
    return Reply(parts=timed([(0, chat("", role="assistant", usage=usage(0))), (10, chat("a", usage=usage(1))),
                              (20, chat("b", usage=usage(2), finish="length")), (20, usage_only(2))]))


async def test_the_screen_shows_the_commands_columns_and_figures_for_the_same_sweep(store):
    from tui.cli.commands.load import load_table

    with ScriptServer([_reply()]) as server:
        fields = {"levels": "1,2", "num-prompts": "3", "slo": "ttft=60000"}
        async with load_screen_started(server, store, fields) as (_app, pilot, screen):
            await wait_for(pilot, lambda: not screen.running and len(screen.finished) == 2, 60)
            table = screen.query_one("#load-table", PagedTable)
            shown = [label for label, _key in table.spec]
            cells = [[str(cell) for cell in row] for _key, row in table.data]
            cols, lines = load_table(screen.finished, {"ttft": 60000.0})
    assert shown == [c.header for c in cols]
    for header in ("peak tok/s", "TPOT p99", "goodput", "J/tok"):  # the command's, on the screen too
        assert header in shown
    # The same text in every cell; a missing figure is "-" on a terminal and "–" on the screen.
    assert cells == [[text.replace("-", "–") if text == "-" else text for text in line] for line in lines]
    assert cells[0][shown.index("goodput")].endswith("(3)")  # every request met the SLO
