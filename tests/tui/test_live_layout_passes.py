"""The app's CPU while Live streams (issue 24): a layout pass re-arranges every widget of the screen,
so a widget whose size cannot have changed is repainted alone. Counted as layout requests
(`refresh(layout=True)`), not milliseconds: a busy machine cannot make these flaky. The figures
(CPU seconds per second, calls per second) are benchmarks/ui_cpu.py's."""

from __future__ import annotations

import asyncio

from textual.app import App
from textual.widgets import Static

from engine.measure.live import LiveSnapshot
from tui.widgets.gauges import GaugePanel
from tui.widgets.status_bar import StatusBar
from tui.widgets.stream_view import StreamView


class StreamHost(App):
    """The Live screen's text pane alone."""

    def compose(self):
        yield StreamView(id="out")


class GaugeHost(App):
    """The Live screen's gauge panel alone."""

    def compose(self):
        yield GaugePanel()


def count_layouts(widget) -> list[bool]:
    """Record, for each refresh of `widget`, whether it asked for a layout pass."""
    asked: list[bool] = []
    original = widget.refresh

    def refresh(*args, **kwargs):
        asked.append(bool(kwargs.get("layout", False)))
        return original(*args, **kwargs)

    widget.refresh = refresh
    return asked


def test_status_bar_unchanged_is_not_redrawn():
    """Twice a second the bar is refreshed on every screen; with the same engine, database, width and
    screen it draws nothing (before: an update, so a layout pass of the screen, every half second)."""

    class Host(App):
        state = "ready"

        def status_parts(self):
            return self.state, "vllm · model · cpu", "db bench"

        def compose(self):
            yield StatusBar()

    async def go():
        app = Host()
        async with app.run_test(size=(80, 24)) as pilot:
            bar = app.query_one(StatusBar)
            await pilot.pause()
            asked = count_layouts(bar)
            bar.refresh_status()
            bar.refresh_status()
            assert asked == []
            app.state = "failed"  # what it shows changed: drawn
            bar.refresh_status()
            await pilot.pause()
            assert asked and "vllm" in str(bar.render())

    asyncio.run(go())


def test_stream_words_on_the_last_line_repaint_the_pane_alone():
    """Text that lands on the pane's last line repaints the pane alone, no layout pass (before: one
    per tick of a stream); text that wraps onto new lines does not lay the screen out either (the
    pane's size does not depend on its text: only its scrollbar learns the new line count), and the
    pane shows all of it."""

    async def go():
        app = StreamHost()
        async with app.run_test(size=(80, 24)) as pilot:
            view = app.query_one(StreamView)
            view.clear(head="› hi")
            view.append("one two")
            await pilot.pause()
            count = len(view.lines)
            asked = count_layouts(view)
            view.append(" three")
            await pilot.pause()
            assert asked and not any(asked)
            assert "one two three" in _shown(view)
            view.append(" four" * 40)  # wraps: the text grows by lines
            await pilot.pause()
            assert not any(asked) and len(view.lines) > count
            assert view.virtual_size.height == len(view.lines)
            assert _shown(view).rstrip().endswith("four")

    asyncio.run(go())


def _shown(view: StreamView) -> str:
    """What the pane draws on screen, as plain text."""
    return "\n".join(view.render_line(y).text for y in range(view.scrollable_content_region.height))


def test_gauge_table_with_the_same_rows_is_repainted_alone():
    """The stats table is one line per row: new figures in the same rows repaint it without a
    layout pass; a row more (stopped early) lays it out."""

    async def go():
        app = GaugeHost()
        async with app.run_test(size=(80, 24)) as pilot:
            panel = app.query_one(GaugePanel)
            stats = panel.query_one(".gauge-stats", Static)
            panel.show(LiveSnapshot(tokens=10, chunks=10, elapsed_s=1.0, tps_now=10.0, tps_request=10.0))
            await pilot.pause()
            asked = count_layouts(stats)
            panel.show(LiveSnapshot(tokens=11, chunks=11, elapsed_s=1.1, tps_now=10.0, tps_request=10.0))
            await pilot.pause()
            assert asked and not any(asked)
            assert "1.1 s" in _plain(stats)
            panel.show(LiveSnapshot(tokens=12, chunks=12, elapsed_s=1.2, tps_now=10.0, tps_request=10.0,
                                    done=True, stopped_early=(20, 12)))
            await pilot.pause()
            assert any(asked) and "12 of 20" in _plain(stats)

    asyncio.run(go())


def _plain(static: Static) -> str:
    """What a Static draws, as plain text."""
    return "\n".join(strip.text for strip in static.render_lines(static.region.reset_offset))


def test_gauge_rows_draw_what_the_table_drew():
    """The stats are drawn without rich's table machinery (ten times a second while streaming):
    line for line, segment for segment what the rich Table grid drew, at every width, for every
    shape of snapshot (reasoning, stopped early, estimated counts, compact)."""
    import random

    from rich.console import Console

    from tui.widgets.gauges import _grid, _Rows, stats_rows

    rnd = random.Random(24)
    console = Console(width=80, color_system="truecolor")
    for _ in range(300):
        snap = LiveSnapshot(
            tokens=rnd.choice([0, 7, 12_345]), chunks=3, elapsed_s=rnd.choice([0.0, 1.25, 123.4]),
            tps_now=rnd.choice([0.0, 9.5, 12_345.6]), tps_request=rnd.choice([0.0, 61.2]),
            ttft_s=rnd.choice([None, 0.1234, 12.0]), tpot_s=rnd.choice([None, 0.016]),
            itl_last_s=rnd.choice([None, 0.0151]), itl_mean_s=rnd.choice([None, 0.2]),
            estimated=rnd.random() < 0.5, reasoning=rnd.random() < 0.3, reasoning_tokens=rnd.choice([0, 40]),
            ttfo_s=rnd.choice([None, 0.5]), done=rnd.random() < 0.5,
            stopped_early=rnd.choice([None, (128, 7)]))
        rows = stats_rows(snap, compact=rnd.random() < 0.5)
        options = console.options.update_width(rnd.randint(8, 40))
        assert list(console.render_lines(_Rows(rows), options, pad=True)) == \
            list(console.render_lines(_grid(rows), options, pad=True))


def test_a_streamed_paragraph_is_wrapped_once_a_frame():
    """A paragraph of a few hundred characters growing by a word is wrapped once for the frame:
    only its last line and the new word, not the paragraphs above it nor the lines of it above,
    and drawing does not wrap again (before: the whole body wrapped for the height and the frame)."""
    import rich._wrap

    import tui.widgets.stream_view as stream_view

    async def go():
        app = StreamHost()
        async with app.run_test(size=(80, 24)) as pilot:
            view = app.query_one(StreamView)
            view.append("first paragraph " * 20 + "\n\n" + "ab " * 400)
            await pilot.pause()
            wrapped: list[str] = []
            words, divide = rich._wrap.words, stream_view.divide_plain

            def counted_words(text):  # Textual's own wrap, a word at a time
                if text:
                    wrapped.append(text)
                return words(text)

            def counted_divide(text, width):  # the pane's wrap of a paragraph
                if text:
                    wrapped.append(text)
                return divide(text, width)

            rich._wrap.words, stream_view.divide_plain = counted_words, counted_divide
            try:
                view.append("cd ")
                await pilot.pause()
            finally:
                rich._wrap.words, stream_view.divide_plain = words, divide
            assert len(wrapped) == 1 and len(wrapped[0]) <= 80
            assert _shown(view).rstrip().endswith("ab cd")

    asyncio.run(go())
