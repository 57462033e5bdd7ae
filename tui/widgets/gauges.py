"""Big live gauges for one streaming request (fed LiveSnapshot objects on a timer)."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Digits, Sparkline, Static

from engine.measure.live import LiveSnapshot


def _ms(seconds: float | None, digits: int = 1) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.{digits}f} ms"


def _rate(value: float | None) -> str:
    return "–" if not value else f"{value:.1f}"


def stats_table(snap: LiveSnapshot, compact: bool = False) -> Table:
    """The gauges other than the big digits, as a two-column grid (label, value)."""
    return _grid(stats_rows(snap, compact))


def _grid(rows: tuple[tuple[str, str], ...]) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    for label, value in rows:
        table.add_row(label, Text(value))
    return table


_DIM = Style(dim=True)
_GAP = Segment(" ", _DIM)


class _Rows:
    """`_grid(rows)` drawn without rich's table machinery (column measuring, cell padding, a render
    per cell): the same segments, line for line (tests/tui/test_live_layout_passes.py compares them),
    at a fraction of the calls, ten times a second while a request streams. Labels dim and padded
    to the widest, one dim space, values right-aligned to the widest; the rich Table itself where
    that would not fit the width or a cell is not one plain line."""

    def __init__(self, rows: tuple[tuple[str, str], ...]) -> None:
        self.rows = rows

    def table(self) -> Table:
        return _grid(self.rows)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        rows = self.rows
        plain = rows and all(_one_line(label) and _one_line(value) for label, value in rows)
        lw = max((cell_len(label) for label, _ in rows), default=0)
        vw = max((cell_len(value) for _, value in rows), default=0)
        if not plain or lw + 1 + vw > options.max_width:
            yield self.table()
            return
        line = Segment.line()
        for label, value in rows:
            yield Segment(label + " " * (lw - cell_len(label)), _DIM)
            yield _GAP
            yield Segment(" " * (vw - cell_len(value)) + value)
            yield line

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table())


def _one_line(text: str) -> bool:
    return text.isprintable() and bool(text)


def stats_rows(snap: LiveSnapshot, compact: bool = False) -> tuple[tuple[str, str], ...]:
    """The (label, value) rows `stats_table` shows, as strings (compared to skip an unchanged redraw)."""
    rows = []
    if compact:
        rows.append(("tok/s now", _rate(snap.tps_now)))
    rows += [
        ("TPS (req)", f"{_rate(snap.tps_request)} tok/s"),
        ("TTFT", _ms(snap.ttft_s, 0)),
    ]
    if snap.reasoning:  # a reasoning model: time to the first answer token, and the split so far
        rows += [("TTFO (answer)", _ms(snap.ttfo_s, 0)), ("reasoning tok", f"{snap.reasoning_tokens}")]
    rows += [
        ("TPOT", _ms(snap.tpot_s)),
        ("ITL last", _ms(snap.itl_last_s)),
        ("ITL mean", _ms(snap.itl_mean_s)),
        # "est.": the server sent no per-event usage, so tokentop counted (tokenizer, or events).
        ("tokens", f"{snap.tokens} est." if snap.estimated else f"{snap.tokens}"),
        ("elapsed", f"{snap.elapsed_s:.1f} s"),
    ]
    if snap.stopped_early:  # a request that enforced its length and got fewer tokens
        asked, got = snap.stopped_early
        rows.append(("stopped early", f"{got} of {asked}"))
    return tuple(rows)


NOTE = "TPS = tokens / elapsed; TPOT, ITL as vLLM"
SOURCE_NOTES = {
    "tokenizer": "tokens: the tokenizer's estimate (no usage from the server)",
    "events": "tokens: the number of events (no usage, no tokenizer: pass --tokenizer)",
    "usage+spread": "tokens: the server's total, spread over its events",
    "usage+tokenizer": "tokens: the server's total, split by the tokenizer",
}


def gauge_note(snap: LiveSnapshot) -> str:
    """The note under the gauges: vLLM's definitions, and how the tokens were counted when the
    server did not count them per event."""
    if snap.done and snap.token_source in SOURCE_NOTES:
        return f"{NOTE}. {SOURCE_NOTES[snap.token_source]}"
    if snap.estimated:
        return f"{NOTE}. tokens: counted by tokentop (no per-event usage)"
    return NOTE


class GaugePanel(Vertical):
    """tokens/s now as big digits, the other gauges as a table, and a sparkline of tokens/s."""

    DEFAULT_CLASSES = "gauge-panel"

    def __init__(self, *, compact: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.compact = compact
        self.last: LiveSnapshot = LiveSnapshot()
        self.peak_tps_now = 0.0  # highest tokens/s-now shown since mount (tests, and a hint for users)
        # What each widget shows now: one that would show the same is not updated (no layout pass).
        self._shown: dict[str, object] = {}
        if compact:
            self.add_class("compact")

    def compose(self) -> ComposeResult:
        if not self.compact:
            yield Static("tokens/s now (1 s window)", classes="gauge-label")
            yield Digits("0.0", classes="gauge-digits")
        yield Static(stats_table(LiveSnapshot(), self.compact), classes="gauge-stats")
        yield Sparkline([], summary_function=max, classes="gauge-spark")
        yield Static(NOTE, classes="gauge-note")

    def show(self, snap: LiveSnapshot) -> None:
        self.last = snap
        if not snap.done:
            self.peak_tps_now = max(self.peak_tps_now, snap.tps_now)
        shown = self._shown
        if not self.compact:
            digits = f"{snap.tps_now:.1f}"
            if shown.get("digits") != digits:
                self.query_one(".gauge-digits", Digits).update(digits)
                shown["digits"] = digits
        rows = stats_rows(snap, self.compact)
        before = shown.get("stats")
        if before != rows:
            # One line per row, never wrapped (no_wrap), the panel's width: the same number of rows is
            # the same height, a repaint of the table alone, not a layout pass of the whole screen.
            same_height = isinstance(before, tuple) and len(before) == len(rows)
            self.query_one(".gauge-stats", Static).update(_Rows(rows), layout=not same_height)
            shown["stats"] = rows
        if not self.compact:
            note = gauge_note(snap)
            if shown.get("note") != note:
                self.query_one(".gauge-note", Static).update(Text(note))
                shown["note"] = note
        spark = self.query_one(".gauge-spark", Sparkline)
        width = max(8, spark.size.width or 24)
        spark.data = list(snap.series[-width:])
