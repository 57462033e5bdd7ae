"""The Live and Suite text pane (tui/widgets/stream_view.py) draws what a Static holding the whole
text drew, while wrapping only what arrives (issue 24: at 100,000 tok/s the whole body was wrapped
and drawn every frame): the lines, following the end, the width, the head and the placeholder."""

from __future__ import annotations

import random

from textual.app import App
from textual.content import Content

from tests.support.wait import wait_for
from tui.widgets.stream_view import StreamView


class Host(App):
    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.kwargs = kwargs

    def compose(self):
        yield StreamView(id="out", **self.kwargs)


def wrapped(text: str, width: int) -> list[str]:
    """The lines a Static holding `text` draws at `width` (Textual's Content wrap)."""
    return [line.plain for line in Content(text).wrap(width)]


def shown(view: StreamView) -> list[str]:
    """The pane's rows on screen, right spaces dropped."""
    return [view.render_line(y).text.rstrip() for y in range(view.scrollable_content_region.height)]


def stream_text(rnd: random.Random, size: int) -> str:
    """One paragraph, no newline: words, long words folded over lines, runs of spaces wider than the
    pane, wide characters."""
    parts = ["the", "token", "of", "a", "stream", " ", "   ", " " * 50, "漢字", "A" * 90, "x" * 79]
    text = ""
    while len(text) < size:
        text += rnd.choice(parts) + " " * rnd.randint(0, 2)
    return text


def append_in_pieces(view: StreamView, text: str, rnd: random.Random, longest: int, after_each=None) -> None:
    """`text` appended in pieces of 1 to `longest` characters; `after_each(sent)` after every piece,
    with the length sent so far."""
    at = 0
    while at < len(text):
        step = rnd.randint(1, longest)
        view.append(text[at:at + step])
        at += step
        if after_each is not None:
            after_each(min(at, len(text)))


async def test_a_stream_in_pieces_draws_the_lines_of_the_whole_text():
    """A long one-line stream appended in pieces of 1 to 40 characters: after every piece, the pane's
    lines are those of the whole text wrapped at once, and its last rows are on screen."""
    rnd = random.Random(24)
    text = stream_text(rnd, 6_000)
    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(StreamView)
        await pilot.pause()

        def lines_are_the_whole_text_s(sent: int) -> None:
            assert view.lines == wrapped(text[:sent], view.scrollable_content_region.width), sent

        append_in_pieces(view, text, rnd, 40, lines_are_the_whole_text_s)
        await pilot.pause()
        assert view.text == text
        assert view.virtual_size.height == len(view.lines)
        rows = shown(view)
        assert rows == [line.rstrip() for line in view.lines[-len(rows):]]


async def test_paragraphs_in_pieces_draw_the_lines_of_the_whole_text():
    """Newlines inside and between pieces: the same lines as the whole text wrapped at once."""
    rnd = random.Random(7)
    text = "\n".join(stream_text(rnd, rnd.randint(0, 300)) for _ in range(30))
    app = Host()
    async with app.run_test(size=(60, 20)) as pilot:
        view = app.query_one(StreamView)
        await pilot.pause()
        append_in_pieces(view, text, rnd, 90)
        assert view.lines == wrapped(text, view.scrollable_content_region.width)


async def test_follows_the_end_unless_scrolled_up():
    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(StreamView)
        view.focus()
        view.append("\n".join(f"line {i}" for i in range(100)))
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y > 0 and "line 99" in shown(view)
        view.append("\nline 100")
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y and "line 100" in shown(view)  # followed
        await pilot.press("home")
        await pilot.press("down")
        await wait_for(pilot, lambda: view.scroll_y == 1)
        view.append("\nline 101")
        await pilot.pause()
        assert view.scroll_y == 1 and shown(view)[0] == "line 1"  # the reader's place is kept
        await pilot.press("end")
        await wait_for(pilot, lambda: view.scroll_y == view.max_scroll_y)
        view.append("\nline 102")
        await pilot.pause()
        assert view.scroll_y == view.max_scroll_y and shown(view)[-1] == "line 102"


async def test_a_new_width_wraps_again():
    rnd = random.Random(3)
    text = stream_text(rnd, 3_000)
    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(StreamView)
        view.append(text)
        await pilot.pause()
        before = list(view.lines)
        await pilot.resize_terminal(50, 24)
        await wait_for(pilot, lambda: view.lines != before)
        width = view.scrollable_content_region.width
        assert width < 50 and view.lines == wrapped(text, width)
        assert all(len(line) <= width for line in view.lines)
        assert view.virtual_size.height == len(view.lines)


async def test_placeholder_head_and_dropped_text():
    """Empty: the placeholder, dim. `clear(head)`: the head bold, a blank line, then the body. Over
    `max_chars`: whole lines go from the top, a dim "…" line under the head says so."""
    app = Host(placeholder="The answer streams here.", max_chars=300)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(StreamView)
        await pilot.pause()
        assert view.lines == ["The answer streams here."] and view.text == ""
        assert view.render_line(0)._segments[0].style.dim
        view.clear(head="› hi [bold]x[/]")
        await pilot.pause()
        assert view.lines == ["› hi [bold]x[/]", "", ""] and view.text == ""
        assert view.render_line(0)._segments[0].style.bold
        words = " ".join(f"w{i}" for i in range(200))
        view.append(words)
        await pilot.pause()
        assert view.lines[:3] == ["› hi [bold]x[/]", "", "…"]
        assert view.render_line(2)._segments[0].style.dim
        body = view.text
        assert body.startswith("…") and len(body) <= 301 and body.endswith("w199")
        assert view.lines[3:] == wrapped(body[1:], view.scrollable_content_region.width)
        assert not view.render_line(3)._segments[0].style.bold
        view.clear()
        await pilot.pause()
        assert view.lines == ["The answer streams here."]


def test_plain_text_is_divided_where_rich_divides_it():
    """The pane divides printable ASCII a line at a time (a 100,000 tok/s stream brings ~10,000
    words a tick): the offsets of rich's divide_line, a word at a time, for words, runs of spaces
    wider than the line, words longer than it, a paragraph opening with spaces, and other text."""
    from rich._wrap import divide_line

    from tui.widgets.stream_view import divide_plain

    rnd = random.Random(22)
    parts = ["a", "bc", " ", "  ", "word", "-", "x" * 37, " " * 23, "é", "漢"]
    for _ in range(5_000):
        width = rnd.randint(1, 40)
        text = "".join(rnd.choice(parts) for _ in range(rnd.randint(0, 80)))
        if rnd.random() < 0.7:
            text = text.replace("é", "e").replace("漢", "k")
        assert divide_plain(text, width) == divide_line(text, width, fold=True), (width, text)
