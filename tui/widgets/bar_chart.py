"""A horizontal bar chart that labels every bar it draws: one line per bar — its whole label, a bar from 0,
its value — and never more bars than lines. Bars that do not fit are left out and the chart says how many
and which end of the order they came from ("5 of 12 shown: the cheapest"). Plain Text, never markup:
labels can carry provider and model names."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    style: str = ""
    text: str | None = None  # the value as shown; default: value with `digits` decimals


def bar_lines(title: str, bars: list[Bar], width: int, height: int, *, digits: int = 1, unit: str = "",
              order: str = "") -> list[Text]:
    """The chart as lines: the title, as many bars as fit in `height` (in the given order), and a note
    naming what was left out. Bars start at 0; the longest is the largest value."""
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
    label_w = max(len(b.label) for b in shown)
    values = [b.text if b.text is not None else f"{b.value:.{digits}f}" for b in shown]
    value_w = max(len(v) for v in values) + (len(unit) + 1 if unit else 0)
    bar_w = max(1, width - label_w - value_w - 3)
    top = max((b.value for b in shown), default=0) or 1.0
    for b, v in zip(shown, values):
        n = max(0, round(bar_w * max(b.value, 0.0) / top))
        line = Text(b.label.ljust(label_w) + " ", style=b.style)
        line.append("█" * n, style=b.style or "cyan")
        line.append(" " * (bar_w - n + 1))
        line.append((v + (f" {unit}" if unit else "")).rjust(value_w), style=b.style)
        lines.append(line)
    if left:
        lines.append(Text(f"{len(shown)} of {len(bars)} shown{(': ' + order) if order else ''}; "
                          f"{left} left out (a taller terminal shows more)", style="dim"))
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
