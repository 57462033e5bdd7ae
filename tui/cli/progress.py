"""The commands' progress on stderr: notes (`tokentop: ...`, wrapped to the terminal), a bench run's line per
request, a load level's line; rewritten in place on a terminal, plain lines in a pipe or a file. Outside text
(a server's error) passes engine.terminal_text.safe_text first. The ETA counts output tokens
(engine.measure.progress.TokenProgress)."""

from __future__ import annotations

from typing import Callable

from engine.measure.progress import TokenProgress
from engine.terminal_text import safe_text


def note_line(stream, message: str) -> None:
    """One note, `tokentop: <message>`, the message made safe and wrapped to the terminal's width."""
    from tui.tables import say_line

    say_line(stream, f"tokentop: {safe_text(str(message))}")


def notes_to(stream) -> Callable[[str], None]:
    """note_line bound to `stream`: the `note`/`log` callback handed to a session and a load run."""
    return lambda message: note_line(stream, message)


class RequestProgress:
    """One progress line on stderr: rewritten in place on a terminal, a line per request otherwise.
    The ETA counts output tokens (engine.measure.progress): a 500-token case takes ten times a 50-token one."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.total = 0
        self.done = 0
        self.tokens = TokenProgress([])
        self.current = ""

    def note(self, message: str) -> None:
        self._clear()
        note_line(self.stream, message)

    def begin(self, lengths: list[int | None]) -> None:
        self.total, self.done = len(lengths), 0
        self.tokens = TokenProgress(lengths)

    def on_start(self, index: int, total: int, request) -> None:
        self.current = f"{request.case_id} rep {request.rep + 1}"
        if self.tty:
            self._line(f"[{index + 1}/{total}] {self.current} …")

    def on_record(self, index: int, record, metrics) -> None:
        self.done = index + 1
        self.tokens.finish(index)
        if metrics.success:
            detail = (f"{metrics.output_tokens} tok, TTFT {metrics.ttft_s * 1000:.0f} ms, "
                      f"TPS {metrics.tps:.1f} tok/s")
        else:
            detail = f"failed: {record.error}"
        self._line(f"[{self.done}/{self.total}] {self.current}: {detail} ({self.tokens.text()})", final=not self.tty)

    def end(self) -> None:
        if self.tty:
            print(file=self.stream, flush=True)

    def _line(self, text: str, final: bool = False) -> None:
        from rich.cells import cell_len

        from tui.tables import line_width, say_line

        text = safe_text(text)  # carries a server's error text
        width = line_width(self.stream)
        if self.tty and (width is None or cell_len(text) < width):
            self.stream.write("\r\x1b[2K" + text)  # rewritten in place: it must fit one row
            self.stream.flush()
        else:  # a line too wide to rewrite in place is kept, wrapped, rather than cut
            self._clear()
            say_line(self.stream, text)

    def _clear(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")


class LevelProgress:
    """The running level's progress on stderr, by tokens where lengths are known: rewritten in place on
    a terminal, else a line at each quarter of the level."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.name = ""
        self.tokens = TokenProgress([])
        self.count = 0
        self.shown = False

    def begin(self, name: str, lengths) -> None:
        self.name, self.tokens, self.count, self.shown = name, TokenProgress(lengths), 0, False

    def on_record(self, index, record, metrics) -> None:
        self.tokens.finish(index)
        self.count += 1
        total = len(self.tokens.targets)
        text = f"  {self.name}: {self.count}/{total} requests, {self.tokens.text()}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
            self.shown = True
        elif total and self.count % max(1, total // 4) == 0 and self.count < total:
            print(text, file=self.stream, flush=True)

    def end(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
