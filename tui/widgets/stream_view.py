"""A scrolling pane of streamed model output, rendered as plain text (never markup)."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.terminal_text import safe_text


def _share_line_breaks() -> None:
    """Textual wraps a Static's text twice per frame: once for its height (Content.get_height) and
    once to draw it (Content.render_strips), each time through rich's `divide_line(text, width,
    fold)` — a pure function, and for this pane (up to `max_chars` on one line) most of a frame's
    cost. Remember its last answers for lines of 200+ characters, so the second wrap of a frame reuses
    the first's and a paragraph that did not change is not wrapped again on the next frame (the same
    offsets: what is drawn does not change). 128 answers: every paragraph of a full pane (20,000
    characters) and the last paragraph's previous versions. Skipped if Textual stops using it."""
    import functools

    import textual.content as content

    divide = getattr(content, "divide_line", None)
    if divide is None or getattr(divide, "_tokentop_shared", False):
        return
    remembered = functools.lru_cache(maxsize=128)(divide)

    def divide_line(text: str, width: int, fold: bool = True) -> list[int]:
        if len(text) < 200:  # short lines: the lookup would cost about what it saves
            return divide(text, width, fold=fold)
        return list(remembered(text, width, fold))  # a copy: the remembered list is never handed out

    divide_line._tokentop_shared = True  # type: ignore[attr-defined]
    content.divide_line = divide_line


_share_line_breaks()


class StreamView(VerticalScroll, can_focus=True):
    """Appends text in batches (call `append` from a timer, not per token), wraps long lines,
    and follows the newest line unless the user scrolled up. Keeps the last `max_chars`."""

    DEFAULT_CLASSES = "stream-view"

    def __init__(self, *, max_chars: int = 20_000, placeholder: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_chars = max_chars
        self.placeholder = placeholder
        self._head = Text()  # a styled header line (e.g. the prompt); plain Text, not markup
        self._body = ""
        self._dirty = False

    def compose(self):
        yield Static(Text(self.placeholder, style="dim"), classes="stream-text", markup=False)

    @property
    def text(self) -> str:
        return self._body

    def clear(self, head: str = "") -> None:
        self._head = Text(safe_text(head), style="bold") if head else Text()
        self._body = ""
        self._render_text()

    def append(self, text: str) -> None:
        """`text` must already be sanitised (engine.terminal_text.StreamSanitizer)."""
        if not text:
            return
        body = self._body + text
        if len(body) > self.max_chars:
            cut = len(body) - self.max_chars
            nl = body.find("\n", cut, cut + 200)
            body = "…" + body[(nl + 1 if nl >= 0 else cut):]
        self._body = body
        self._render_text()

    def _render_text(self) -> None:
        follow = self.scroll_y >= self.max_scroll_y - 1
        content = Text()
        if self._head:
            content.append_text(self._head)
            content.append("\n\n")
        content.append(self._body)  # plain string: no markup, no emoji codes
        if not self._head and not self._body:
            content = Text(self.placeholder, style="dim")
        static = self.query_one(".stream-text", Static)
        height, width = static.size.height, static.size.width
        static.update(content, layout=False)
        # A layout pass of the whole screen only when the text's height changes (a new wrapped
        # line): most ticks of a stream add words to the last line, a repaint of the pane alone.
        # The height is the wrap the frame draws anyway (divide_line above remembers it).
        if not width or static.get_content_height(self.size, self.size, width) != height:
            static.refresh(layout=True)
            if follow:  # the same height keeps the end where it is: nothing to scroll
                self.call_after_refresh(self.scroll_end, animate=False)
