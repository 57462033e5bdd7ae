"""A scrolling pane of streamed model output, rendered as plain text (never markup)."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine.terminal_text import safe_text


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
        self.query_one(".stream-text", Static).update(content)
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)
