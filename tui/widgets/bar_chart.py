"""A horizontal bar chart that labels every bar it draws: one line per bar — its whole label, a bar from 0,
its value — and never more bars than lines. A bar's length is its value on a scale from 0 to the
largest, in eighths of a cell (▏▎▍▌▋▊▉█, as rich and nvtop draw bars). Bars that do not fit are
left out and the chart says how many and which end of the order they came from ("5 of 12 shown: the
cheapest"). Plain Text, never markup: labels can carry provider and model names."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

EIGHTHS = " ▏▎▍▌▋▊▉"  # a cell's left 0/8 … 7/8 (as rich's and nvtop's bars): 8 steps per cell
MIN_BAR = 12  # cells a bar may always grow to, whatever the labels' width (when the labels allow it)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    style: str = ""
    text: str | None = None  # the value as shown; default: value with `digits` decimals


def bar_text(value: float, top: float, cells: int) -> str:
    """A bar of `value` on a scale from 0 to `top` over `cells` cells, in eighths of a cell: full blocks,
    then one partial block (▏▎▍▌▋▊▉), so two values 1/(8 * cells) of `top` apart differ. At most `cells`
    characters; "" for 0 (or less, or a `top` of 0)."""
    if top <= 0 or value <= 0 or cells <= 0:
        return ""
    eighths = min(cells * 8, round(8 * cells * value / top))
    full, part = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[part] if part else "")


def _shared_words(labels: list[str]) -> tuple[str, str]:
    """The leading and trailing words every label shares (never a whole label): ("", "(article)")."""
    split = [label.split(" ") for label in labels]
    if len(split) < 2:
        return "", ""
    shortest = min(len(words) for words in split)
    head = 0
    while head < shortest - 1 and all(words[head] == split[0][head] for words in split):
        head += 1
    tail = 0
    while tail < shortest - 1 - head and all(words[-1 - tail] == split[0][-1 - tail] for words in split):
        tail += 1
    return " ".join(split[0][:head]), " ".join(split[0][len(split[0]) - tail:]) if tail else ""


def bar_lines(title: str, bars: list[Bar], width: int, height: int, *, digits: int = 1, unit: str = "",
              order: str = "") -> list[Text]:
    """The chart as lines: the title, as many bars as fit in `height` (in the given order), and a note
    naming what was left out. Bars start at 0 and are drawn in eighths of a cell; the longest is the
    largest value and fills the room the labels and values leave. Where the labels would leave a bar
    fewer than MIN_BAR cells, the words every label shares ("(article)", one GPU's name) move into the
    title, once, when the title has room for them: every label stays whole."""
    lines = [Text(title, style="bold")]
    room = max(0, height - 1)
    shown = bars
    left = 0
    if len(bars) > room:
        keep = max(0, room - 1)  # one line for the note
        shown, left = bars[:keep], len(bars) - keep
    if not shown:
        if left:
            lines.append(Text(f"{left} bar(s) do not fit at this height", style="dim"))
        return lines[:height] if height else lines
    labels = [b.label for b in shown]
    values = [b.text if b.text is not None else f"{b.value:.{digits}f}" for b in shown]
    value_w = max(len(v) for v in values) + (len(unit) + 1 if unit else 0)
    # label, a space, the bar, at least two spaces, the value: a bar never touches its value
    fixed = value_w + 3
    if width - max(len(label) for label in labels) - fixed < MIN_BAR:
        head, tail = _shared_words(labels)
        shared = " ".join(w for w in (head, tail) if w)
        if shared and len(title) + 3 + len(shared) <= width:
            lines[0] = Text(f"{title} {shared}" if shared.startswith("(") else f"{title} · {shared}", style="bold")
            labels = [label[len(head):].strip() if head else label for label in labels]
            labels = [label[:len(label) - len(tail)].strip() if tail else label for label in labels]
    label_w = max(len(label) for label in labels)
    bar_w = max(1, width - label_w - fixed)
    top = max((b.value for b in shown), default=0) or 1.0
    for b, label, v in zip(shown, labels, values):
        bar = bar_text(max(b.value, 0.0), top, bar_w)
        line = Text(label.ljust(label_w) + " ", style=b.style)
        line.append(bar, style=b.style or "cyan")
        line.append(" " * (bar_w - len(bar) + 2))
        line.append((v + (f" {unit}" if unit else "")).rjust(value_w), style=b.style)
        lines.append(line)
    if left:
        note = f"{len(shown)} of {len(bars)} shown{(': ' + order) if order else ''}"
        # the longest that fits the width (a note that wrapped would lose its end under the chart)
        notes = [f"{note}; {left} left out (a taller terminal shows more)", f"{note}; {left} left out", note]
        lines.append(Text(next((n for n in notes if len(n) <= width), note), style="dim"))
    return lines


class BarChart(Static):
    """`show(title, bars, ...)`; redraws itself to its size (bars that do not fit are named as left out)."""

    DEFAULT_CSS = """
    BarChart { height: 1fr; padding: 0 1; }
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._spec: tuple = ("", [], {})

    def show(self, title: str, bars: list[Bar], **options) -> None:
        self._spec = (title, list(bars), options)
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        title, bars, options = self._spec
        width = self.content_size.width or max(20, self.app.size.width - 2)
        height = self.content_size.height or 8
        self.update(Text("\n").join(bar_lines(title, bars, width, height, **options)))

    @property
    def lines(self) -> list[str]:
        """What the chart shows, as plain lines (tests)."""
        title, bars, options = self._spec
        width = self.content_size.width or max(20, self.app.size.width - 2)
        height = self.content_size.height or 8
        return [t.plain for t in bar_lines(title, bars, width, height, **options)]
