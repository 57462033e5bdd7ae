"""A scrolling pane of streamed model output, rendered as plain text (never markup).

A frame costs the lines on screen, not the text kept (issue 24: at 100,000 tok/s a Static holding
the whole body was re-wrapped and drawn whole ten times a second). The body is kept as wrapped
lines, wrapped as it arrives: an append re-wraps only the body's last line and the new text. Greedy
word wrap (rich's `divide_line`, what Textual's Content uses, so the breaks are a Static's) never
moves a break before the last one: wrapping the text from the start of its last wrapped line gives
the same lines as wrapping the whole paragraph (tests/tui/test_stream_view.py checks it)."""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.segment import Segment
from textual.content import Content, divide_line
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.selection import Selection
from textual.strip import Strip
from textual.style import Style as VisualStyle
from textual.widget import Widget

from engine.terminal_text import safe_text

_LETTER = re.compile(r"[^ ]")
_WORD = re.compile(r"\S+\s*")  # rich._wrap's words, from a non-space
MARKER = "…"  # drawn (dim) under the head when the oldest text was dropped; `text` starts with it


def divide_plain(text: str, width: int) -> list[int]:
    """rich's `divide_line(text, width)` (what Textual's Content wraps with): the offsets where
    lines start, for one paragraph; `width` >= 1. Printable ASCII (one cell a character, spaces the
    only whitespace) is divided a line at a time with str.rfind/find instead of a word at a time (a
    stream at 100,000 tok/s brings ~10,000 words a tick); the same offsets (greedy: a word goes on
    the line when its letters end within `width`), falling back to `divide_line` from a line's start
    for a word longer than the line (folded) and for a paragraph that opens with spaces."""
    if not (text.isascii() and text.isprintable()) or text[:1] == " ":
        return divide_line(text, width, fold=True)
    offsets: list[int] = []
    start, size = 0, len(text)
    while start + width < size:
        end = start + width  # the first character past the line
        if text[end] == " ":  # the words ending by `end` fit; the next word starts the next line
            word = _LETTER.search(text, end)
            if word is None:
                break
            nxt = word.start()
        else:  # the word at or across `end` goes to the next line, unless it is the line's first
            nxt = text.rfind(" ", start, end) + 1
            if nxt <= start:  # longer than the line: folded, as rich folds it
                return offsets + [start + o for o in divide_line(text[start:], width, fold=True)]
        offsets.append(nxt)
        start = nxt
    return offsets


def wrap_paragraph(text: str, width: int) -> tuple[list[str], list[int]]:
    """One paragraph (no newline) wrapped to `width` cells as Textual's Content wraps it (overflow
    fold, left aligned): (the lines as drawn, the number of characters of `text` each line came
    from, whitespace at a break included). Pure; `width` >= 1."""
    offsets = divide_plain(text, width)
    starts = [0, *offsets]
    ends = [*offsets, len(text)]
    lines: list[str] = []
    last = len(starts) - 1
    for i, (start, end) in enumerate(zip(starts, ends)):
        piece = Content(text[start:end])
        piece = piece.truncate(width).rstrip_end(width) if i == last else piece.rstrip().truncate(width)
        lines.append(piece.plain)
    return lines, [end - start for start, end in zip(starts, ends)]


def wrap_text(text: str, width: int) -> tuple[list[str], list[int]]:
    """`text` split at newlines, each paragraph wrapped (`wrap_paragraph`); a paragraph's last line
    counts its newline among its characters. At least one line ("" for "")."""
    lines: list[str] = []
    sizes: list[int] = []
    for paragraph in text.split("\n"):
        more, counts = wrap_paragraph(paragraph, width)
        if sizes:
            sizes[-1] += 1  # the newline before this paragraph
        lines += more
        sizes += counts
    return lines, sizes


class StreamView(ScrollView, can_focus=True):
    """Appends text in batches (call `append` from a timer, not per token), wraps long lines,
    and follows the newest line unless the user scrolled up. Keeps about the last `max_chars`
    characters of the body: whole wrapped lines are dropped from the top, and a dim "…" line under
    the head says so. Scrolls with ↑/↓/PgUp/PgDn/Home/End (ScrollView's bindings)."""

    DEFAULT_CLASSES = "stream-view"

    def __init__(self, *, max_chars: int = 20_000, placeholder: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_chars = max_chars
        self.placeholder = placeholder
        self._head = ""  # drawn bold above a blank line; plain text, not markup
        self._body = ""  # the body kept (without the marker)
        self._trimmed = False  # text was dropped from the top
        self._width = 0  # the width the lines were wrapped at; 0 = not yet wrapped
        self._top: list[tuple[str, str]] = []  # (line, style) above the body: head, blank, marker
        self._lines: list[str] = [""]  # the body, wrapped
        self._sizes: list[int] = [0]  # characters of the body each line came from
        self._strips: list[Strip | None] = [None]  # drawn body lines, None until drawn
        self._top_strips: list[Strip | None] = []

    # -- the public API ---------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The body: what `append` added since `clear`, "…" first if older text was dropped."""
        return MARKER + self._body if self._trimmed else self._body

    def clear(self, head: str = "") -> None:
        """Empty the body; `head` (one line, e.g. the prompt) is drawn bold above it."""
        self._head = safe_text(head) if head else ""
        self._body = ""
        self._trimmed = False
        self._rewrap(follow=True)

    def append(self, text: str) -> None:
        """`text` must already be sanitised (engine.terminal_text.StreamSanitizer)."""
        if not text:
            return
        if "\t" in text:  # as Content draws tabs: to the next multiple of 8 in the paragraph
            column = (len(self._body) - (self._body.rfind("\n") + 1)) % 8
            text = (" " * column + text).expandtabs(8)[column:]
        follow = self._following()
        was_empty = self._empty()
        if len(text) > self.max_chars:  # more than the pane keeps: start again from its end
            cut = len(text) - self.max_chars
            nl = text.find("\n", cut, cut + 200)
            self._body = text[(nl + 1 if nl >= 0 else cut):]
            self._trimmed = True
            self._rewrap(follow)
            return
        self._body += text
        width = self._width
        if not width or was_empty:
            self._rewrap(follow)
            return
        first, start = self._restart(len(self._body) - len(text))
        lines, sizes = wrap_text(self._body[start:], width)
        self._lines[first:] = lines
        self._sizes[first:] = sizes
        self._strips[first:] = [None] * len(lines)
        top = len(self._top)
        dropped = self._trim()
        if self._wrap_width() != width:  # the scrollbar comes or goes: a narrower or wider text
            self._rewrap(follow)
            return
        # lines dropped move the rest up (less the marker line when it first comes)
        self._update(first - dropped, dropped - (len(self._top) - top), follow, everything=bool(dropped))

    # -- wrapping -------------------------------------------------------------------------------
    def _restart(self, end: int) -> tuple[int, int]:
        """Where to wrap again from when text was added at `end` (the body's length before it):
        (line index, its offset in the body). Greedy wrap decides each break from the text before
        it alone, so the lines above a line that starts a word, or a paragraph, do not move, and
        wrapping from there gives what wrapping the paragraph gives. The last line, unless it starts
        with whitespace (a long word folded inside its trailing spaces) or inside a folded word
        whose rest fits only without its trailing spaces (a whole wrap folds those spaces onto
        lines of their own); then the line above, and so on."""
        body, sizes, width = self._body, self._sizes, self._width
        first = len(sizes) - 1
        start = end - sizes[first]
        while first > 0 and start > 0 and body[start - 1] != "\n" and not self._clean_start(start, width):
            first -= 1
            start -= sizes[first]
        return first, start

    def _clean_start(self, start: int, width: int) -> bool:
        body = self._body
        if start >= len(body) or body[start].isspace():
            return False
        if body[start - 1].isspace():  # a word's start, unless the spaces open the paragraph
            before = start - 1
            while before >= 0 and body[before] != "\n" and body[before].isspace():
                before -= 1
            if before >= 0 and body[before] != "\n":
                return True
        word = _WORD.match(body, start)
        rest = word.group() if word else ""
        return not cell_len(rest.rstrip()) <= width < cell_len(rest)

    def _empty(self) -> bool:
        """Nothing to show but the placeholder."""
        return not (self._head or self._body or self._trimmed)

    def _count(self) -> int:
        """Lines in the pane."""
        return len(self._top) + (0 if self._empty() else len(self._lines))

    def _following(self) -> bool:
        return self.scroll_y >= self.max_scroll_y

    def _wrap_width(self) -> int:
        """The text's width: the pane's inside, less the scrollbar when the lines (wrapped at
        `self._width`) do not fit its height. 0 before the first layout."""
        region = self.content_region
        if region.width <= 0:
            return 0
        overflow = self.styles.overflow_y
        if overflow == "scroll" or (overflow == "auto" and self._count() > region.height):
            return max(region.width - self.styles.scrollbar_size_vertical, 1)
        return region.width

    def _make_top(self, width: int) -> list[tuple[str, str]]:
        """The lines above the body, (text, style): the head and a blank line, the marker; or the
        placeholder when there is nothing else."""
        if self._empty():
            return [(line, "dim") for line in wrap_text(self.placeholder, width)[0]] if self.placeholder else []
        top: list[tuple[str, str]] = []
        if self._head:
            top += [(line, "bold") for line in wrap_text(self._head, width)[0]]
            top.append(("", ""))
        if self._trimmed:
            top.append((MARKER, "dim"))
        return top

    def _rewrap(self, follow: bool) -> None:
        """Wrap everything again (a new width, `clear`), at the width the result needs."""
        full = self.content_region.width
        if full <= 0:  # not laid out yet: wrapped at the first frame
            self._width = 0
            self._top, self._lines, self._sizes, self._strips = [], [""], [0], [None]
            return
        for width in (full, full - self.styles.scrollbar_size_vertical):
            self._width = width = max(width, 1)
            self._lines, self._sizes = wrap_text(self._body, width)
            self._strips = [None] * len(self._lines)
            self._trim()
            self._top = self._make_top(width)
            if self._wrap_width() == width:
                break
        self._top_strips = [None] * len(self._top)
        self._update(0, 0, follow, everything=True)

    def _trim(self) -> int:
        """Drop whole lines from the top while the body is over `max_chars`; how many."""
        excess = len(self._body) - self.max_chars
        if excess <= 0:
            return 0
        count = removed = 0
        while removed < excess and count < len(self._lines) - 1:
            removed += self._sizes[count]
            count += 1
        if not count:
            return 0
        del self._lines[:count], self._sizes[:count], self._strips[:count]
        self._body = self._body[removed:]
        if not self._trimmed:  # the marker line appears under the head
            self._trimmed = True
            self._top = self._make_top(self._width)
            self._top_strips = [None] * len(self._top)
        return count

    def _update(self, first_changed: int, moved_up: int, follow: bool, everything: bool = False) -> None:
        """The new line count to the scrollbars (no layout pass of the screen: the pane's size does
        not depend on its text), then repaint from body line `first_changed` down (or `everything`)
        and follow the end, or keep the lines read in place when `moved_up` lines went."""
        size = Size(self._width, self._count())
        if size != self.virtual_size:
            self.set_reactive(Widget.virtual_size, size)
            self._scroll_update(size)  # scrollbars, and the scroll clamped to the new size
        if follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
        elif moved_up:
            self.scroll_to(y=max(self.scroll_y - moved_up, 0), animate=False, immediate=True)
        if everything:
            self.refresh()
        else:
            first = len(self._top) + first_changed
            self.refresh_lines(first, self._count() - first)

    # -- drawing --------------------------------------------------------------------------------
    def on_resize(self) -> None:
        if self._wrap_width() != self._width:
            self._rewrap(self._following())

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = [None] * len(self._lines)
        self._top_strips = [None] * len(self._top)

    def render_line(self, y: int) -> Strip:
        """Line `y` of the pane: one wrapped line, drawn once and kept until it changes."""
        if not self._width and self.content_region.width > 0:
            self._rewrap(self._following())
        index = round(self.scroll_y) + y
        top = len(self._top)
        if index < top:
            strip = self._top_strips[index]
            if strip is None:
                line, line_style = self._top[index]
                strip = self._top_strips[index] = self._draw(line, line_style, index)
        elif index - top < len(self._lines) and not self._empty():
            strip = self._strips[index - top]
            if strip is None:
                strip = self._strips[index - top] = self._draw(self._lines[index - top], "", index)
        else:
            return Strip.blank(self.scrollable_content_region.width, self.visual_style.rich_style)
        return strip

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        """The text under a mouse selection (as Textual's Log: the lines as drawn)."""
        return selection.extract("\n".join(self.lines)), "\n"

    @property
    def lines(self) -> list[str]:
        """Every line of the pane as drawn, top to bottom: the head and a blank line, "…" when
        text was dropped, the body wrapped; or the placeholder. Plain strings (a copy)."""
        return [line for line, _ in self._top] + ([] if self._empty() else list(self._lines))

    def _draw(self, text: str, text_style: str, y: int) -> Strip:
        """One line as Textual's Content draws a line of a Static (its segments, padded to the
        width), without wrapping it again: the line already fits."""
        style = self.visual_style
        line_style = style + (self._get_style(text_style) if text_style else style)
        segments = [Segment(text, line_style.rich_style_with_offset(0, y))]
        return Strip(segments, cell_len(text)).extend_cell_length(
            self._width, (style + VisualStyle(reverse=False)).rich_style)
