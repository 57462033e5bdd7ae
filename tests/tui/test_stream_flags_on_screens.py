"""What the screens show of issue 17's stream cases: a load level with failures flagged on the Load
screen, and gauges that say when a token count is tokentop's estimate or a request stopped early
(a scripted OpenAI-compatible server on loopback, no model)."""

from __future__ import annotations

import re

from rich.console import Console

from engine.measure.live import LiveSnapshot
from tests.support.apps import load_screen_started
from tests.support.fake_openai import ScriptServer
from tests.support.wait import wait_for
from tests.unit.test_streams import FAILING_LEVEL
from tui.widgets.gauges import gauge_note, stats_table


def _text(renderable) -> str:
    console = Console(width=26, record=True, file=open("/dev/null", "w"))
    console.print(renderable)
    return console.export_text()


async def test_load_screen_flags_a_level_with_failures(store):
    from tui.widgets.paged_table import PagedTable

    with ScriptServer(FAILING_LEVEL) as server:
        fields = {"levels": "1", "num-prompts": "10"}
        async with load_screen_started(server, store, fields) as (app, pilot, screen):
            await wait_for(pilot, lambda: not screen.running and screen.finished, 60)
            (level,) = screen.finished
            assert level.summary.failure_rate == 0.5
            table = screen.query_one("#load-table", PagedTable)
            cells = [str(c) for c in table.get_row_at(0)]
            assert "5 (50%)" in cells
            assert screen.last_message.startswith("! failures at concurrency 1")
            note = "5 of 10 failed (50 %): HTTP 503 ×3, HTTP 429 ×1, error in stream ×1"
            # the notification is a message the app handles after the status line is set
            await wait_for(pilot, lambda: any(note in n.message for n in app._notifications), 10)


def test_gauges_say_when_the_count_is_an_estimate_and_when_a_request_stopped_early():
    estimated = LiveSnapshot(tokens=4, done=True, estimated=True, token_source="tokenizer")
    assert re.search(r"tokens +4 est\.", _text(stats_table(estimated, compact=True)))
    assert "the tokenizer's estimate" in gauge_note(estimated)
    events = LiveSnapshot(tokens=2, done=True, estimated=True, token_source="events")
    assert "pass --tokenizer" in gauge_note(events)
    exact = LiveSnapshot(tokens=12, done=True, token_source="usage")
    assert "est." not in _text(stats_table(exact)) and gauge_note(exact) == "TPS = tokens / elapsed; TPOT, ITL as vLLM"
    early = LiveSnapshot(tokens=1, done=True, stopped_early=(20, 1), token_source="usage")
    assert re.search(r"stopped early +1 of 20", _text(stats_table(early, compact=True)))
