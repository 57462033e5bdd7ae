"""Table printing: laying text out for a terminal (its width, at least MIN_WIDTH; wrapped lines with a hang;
`say_line`), and the CLI's tables (`Col`, `print_table` in pages or with columns kept, the runs, case and
roofline tables), from the cells tui.cells formats."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tui.cells import (
    LATENCY_NOTE,
    _fmt,
    case_columns,
    case_rows,
    client_health_lines,
    client_health_of,
    failures_line,
    fmt_date,
    model_name,
    reasoning_line,
    stream_lines,
    where_line,
    where_short,
    workload_name,
    workload_of,
)


def column_pages(widths: list[int], available: int, fixed: int = 0) -> list[list[int]]:
    """Split columns (their widths, padding included) into pages that each fit `available` cells
    beside `fixed` always-shown ones: at 80 columns a table shows fewer columns, whole, and the rest
    are one key away, instead of a number cut at the edge."""
    pages: list[list[int]] = [[]]
    used = fixed
    for i, w in enumerate(widths):
        if pages[-1] and used + w > available:
            pages.append([])
            used = fixed
        pages[-1].append(i)
        used += w
    return pages


def print_case_table(run: dict[str, Any], requests: list[dict[str, Any]], file) -> None:
    """`tokentop show` / `bench`: the run's line, then its per-case (or the level's) figures in as many
    stacked tables as the terminal's width needs (the case column repeated), never a cut number."""
    console = _console(file)
    console.print(Text(f"run {run['run_id']}  {run.get('kind')}  {run['status']}  "
                       f"{run.get('engine')} · {run.get('model')} · {run.get('device')}"))
    where = where_line(run)
    if where:
        console.print(Text(where))
    key = workload_of(run)["key"]
    console.print(Text(f"workload: {workload_of(run)['label']}" + (f" (key {key})" if key else "")))
    columns = case_columns(run)
    cols = [Col("case", wrap=True, min_width=8), Col("target", "right")]
    cols += [Col(header, "right") for header, _k, _f in columns]
    rows = [[Text(str(case_id)), _fmt(agg.get("target_tokens"), "{:.0f}"),
             *[_fmt(agg.get(key), f) for _h, key, f in columns]] for case_id, agg in case_rows(run)]
    print_table(console, cols, rows, layout="pages", fixed=1)
    console.print(Text(LATENCY_NOTE), style="dim")
    # A stop cuts the request in flight short: that is not a failure (the server and connection were fine).
    stopped = [r for r in requests if not r.get("success") and r.get("error") == "aborted"]
    failed = [r for r in requests if not r.get("success") and r.get("error") != "aborted"]
    overall = (run.get("summary") or {}).get("overall") or {}
    if failed:
        kinds = {k: n for k, n in (overall.get("failures_by_kind") or {}).items() if k != "aborted"}
        console.print(Text(failures_line({**overall, "failures_by_kind": kinds}, len(requests) - len(stopped),
                                         len(failed), failed[0].get("error")), style="yellow"))
    if stopped:
        console.print(Text(f"{len(stopped)} request(s) stopped mid-stream when the run was stopped (kept, not failed)"))
    for text in stream_lines(overall, requests):
        console.print(Text(text))
    line = reasoning_line(overall)
    if line:
        console.print(Text(line))
    for text, style in client_health_lines(client_health_of(run)):
        console.print(Text(text), style=style)


MIN_WIDTH = 80  # every table is laid out for at least this many columns
PIPE_WIDTH = MIN_WIDTH  # output to a file or pipe, when no terminal says how wide it is


def terminal_width(file=None) -> int:
    """How wide the tables are laid out: $COLUMNS when set (as `COLUMNS=80 tokentop runs`), else the
    terminal's width (of `file`, else stdout/stderr), else PIPE_WIDTH; never below MIN_WIDTH."""
    import os

    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) > 0:
        return max(MIN_WIDTH, int(env))
    for stream in (file, sys.stdout, sys.stderr):
        try:
            if stream is not None and stream.isatty():
                return max(MIN_WIDTH, os.get_terminal_size(stream.fileno()).columns)
        except (AttributeError, OSError, ValueError):
            continue
    return PIPE_WIDTH


class WrappingConsole(Console):
    """The commands' console: a line of text (a note, a heading, an explanation) is wrapped at spaces to
    the width with its further lines indented (`wrapped_text`), never broken mid-word or cut; tables lay
    themselves out (`print_table`)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        wrapped = []
        for obj in objects:
            if isinstance(obj, str):
                obj = self.render_str(obj)
            wrapped.append(wrapped_text(obj, self.width) if isinstance(obj, Text) else obj)
        super().print(*wrapped, **kwargs)


def _console(file, width: int | None = None) -> Console:
    return WrappingConsole(file=file, highlight=False, soft_wrap=False, width=width or terminal_width(file))


HANG = 2  # a wrapped line's further lines start this many cells right of its first


def wrap_spans(text: str, width: int, hang: int = HANG) -> list[tuple[int, int, int]]:
    """Where to break one line of `text` (no newline in it) to fit `width` terminal cells (wide
    characters count 2, rich.cells.cell_len): [(start, end, indent)] per output line, `text[start:end]`
    printed after `indent` spaces. Breaks at spaces; the further lines are indented by the line's own
    leading spaces plus `hang`; a word wider than a line (a path, a URL) is folded, never cut."""
    from rich.cells import cell_len

    lead = len(text) - len(text.lstrip(" "))
    indent = min(lead + hang, max(0, width - 20))
    out: list[tuple[int, int, int]] = []
    start, pad = lead, lead  # the current line: text from `start`, after `pad` spaces
    end, used = start, pad
    for m in re.finditer(r"\S+", text[lead:]):
        w_start, w_end = m.start() + lead, m.end() + lead
        need = cell_len(text[end:w_end]) if end > start else cell_len(text[w_start:w_end])
        if used + need <= width:
            if end == start:
                start = w_start
            end, used = w_end, used + need
            continue
        if end > start:  # the word goes to the next line
            out.append((start, end, pad))
            start, pad = w_start, indent
            end, used = start, pad
        while used + cell_len(text[start:w_end]) > width:  # a word too wide for any line: fold it
            cut = start
            while cut < w_end and used + cell_len(text[start:cut + 1]) <= width:
                cut += 1
            cut = max(cut, start + 1)
            out.append((start, cut, pad))
            start, pad = cut, indent
            used = pad
        end, used = w_end, used + cell_len(text[start:w_end])
    if end > start or not out:
        out.append((start, end, pad))
    return out


def wrap_lines(text: str, width: int, hang: int = HANG) -> list[str]:
    """`text` (lines split at newlines) as lines of at most `width` cells (see wrap_spans)."""
    out = []
    for line in str(text).split("\n"):
        out += [" " * pad + line[a:b] for a, b, pad in wrap_spans(line, width, hang)]
    return out


def wrapped_text(text: Text | str, width: int, hang: int = HANG, style: str = "") -> Text:
    """A rich Text wrapped like wrap_lines, its styles kept: print it with soft_wrap off and rich
    breaks nothing further (every line fits `width`)."""
    text = text if isinstance(text, Text) else Text(str(text), style=style)
    lines = []
    offset = 0
    for line in text.plain.split("\n"):
        part = text[offset:offset + len(line)]
        for a, b, pad in wrap_spans(line, width, hang):
            piece = Text(" " * pad)
            piece.append_text(part[a:b])
            lines.append(piece)
        offset += len(line) + 1
    return Text("\n").join(lines)


def line_width(stream=None) -> int | None:
    """The width a status or error line is wrapped to: $COLUMNS when set, else the width of the terminal
    `stream` is (never below MIN_WIDTH); None when it goes to a pipe or a file, where a message stays one
    line for the program reading it."""
    import os

    env = os.environ.get("COLUMNS", "").strip()
    if env.isdigit() and int(env) > 0:
        return max(MIN_WIDTH, int(env))
    try:
        if stream is not None and stream.isatty():
            return max(MIN_WIDTH, os.get_terminal_size(stream.fileno()).columns)
    except (AttributeError, OSError, ValueError):
        pass
    return None


def say_line(stream, text: str, hang: int = HANG) -> None:
    """print() for a status, warning or error line (stderr notes, progress kept as lines): on a terminal
    wrapped to its width at spaces, the further lines indented (`wrap_lines`); to a pipe one line."""
    width = line_width(stream)
    for line in wrap_lines(text, width, hang) if width else [text]:
        print(line, file=stream, flush=True)


@dataclass
class Col:
    """One column of a CLI table. Numbers and ids never wrap and are never cut: a column that does not
    fit goes to another page (`print_table(layout="pages")`) or is left out and named
    (`layout="drop"`). `wrap` columns (names, notes) may fold onto more lines, down to `min_width`."""

    header: str
    justify: str = "left"
    wrap: bool = False
    min_width: int = 12
    priority: int = 0  # layout="drop": lower keeps its place first


GAP = 2  # cells between columns


def _natural(col: Col, index: int, rows: Sequence[Sequence[Any]]) -> int:
    return max([_cell_len(col.header)] + [_cell_len(r[index]) for r in rows])


def _cell_len(value: Any) -> int:
    if isinstance(value, Text):
        return max((Text(line).cell_len for line in value.plain.split("\n")), default=0)
    return max((Text(line).cell_len for line in str(value).split("\n")), default=0)


LONG_WORD = 12  # a word longer than this (a file name, a path) may fold inside a wrapping column


def _least(col: Col, natural: int, word: int = 0) -> int:
    """A column's narrowest width: a wrapping column folds at spaces down to `min_width`, never below its
    longest word (`word`) up to LONG_WORD cells: 'interactive' is not broken into 'interacti' and 've',
    while a 48-character file name folds rather than pushing the column off an 80-column table."""
    return min(natural, max(col.min_width, _cell_len(col.header), min(word, LONG_WORD))) if col.wrap else natural


def _longest_word(index: int, rows: Sequence[Sequence[Any]]) -> int:
    from rich.cells import cell_len

    values = (r[index].plain if isinstance(r[index], Text) else str(r[index]) for r in rows)
    return max((cell_len(w) for v in values for w in v.split()), default=0)


def table_pages(cols: Sequence[Col], rows: Sequence[Sequence[Any]], width: int, fixed: int = 1) -> list[list[int]]:
    """Column indices per page: the first `fixed` columns on every page, the others in order, as many
    whole columns per page as fit `width`. A wrapping column takes its whole width when that fits, else
    its least width (it then folds onto more lines)."""
    natural = [_natural(c, i, rows) + GAP for i, c in enumerate(cols)]
    least = [_least(c, natural[i] - GAP, _longest_word(i, rows)) + GAP for i, c in enumerate(cols)]
    head = list(range(min(fixed, len(cols))))
    if sum(natural[:fixed]) <= width // 2:  # the repeated columns (a case, a level) stay on one line
        least[:fixed] = natural[:fixed]
    base = sum(least[:fixed])
    pages: list[list[int]] = [list(head)]
    used = base
    for i in range(len(head), len(cols)):
        for need in (natural[i], least[i]):
            if used + need <= width + GAP:
                pages[-1].append(i)
                used += need
                break
        else:
            if len(pages[-1]) == len(head):  # too wide even alone: it gets a page of its own anyway
                pages[-1].append(i)
                continue
            pages.append(list(head) + [i])
            used = base + least[i]
    return pages


def kept_columns(cols: Sequence[Col], rows: Sequence[Sequence[Any]], width: int) -> list[int]:
    """layout="drop": the columns that fit `width`, taken by priority (then order), shown in order; a
    wrapping column takes its whole width when that fits, else its least width."""
    natural = [_natural(c, i, rows) + GAP for i, c in enumerate(cols)]
    least = [_least(c, natural[i] - GAP, _longest_word(i, rows)) + GAP for i, c in enumerate(cols)]
    used, kept = 0, []
    for i in sorted(range(len(cols)), key=lambda i: (cols[i].priority, i)):
        for need in (natural[i], least[i]):
            if used + need <= width + GAP or not kept:
                kept.append(i)
                used += need
                break
    return sorted(kept)


def render_table(cols: Sequence[Col], rows: Sequence[Sequence[Any]], shown: Sequence[int], width: int) -> Table:
    """A rich Table of the `shown` columns, each at an explicit width: numbers at their widest value,
    wrapping columns given what is left (up to their widest value), so rich never squeezes a number."""
    natural = {i: _natural(cols[i], i, rows) for i in shown}
    widths = {i: _least(cols[i], natural[i], _longest_word(i, rows)) for i in shown}
    spare = width - sum(widths.values()) - GAP * (len(shown) - 1)
    for i in shown:
        if cols[i].wrap and spare > 0:
            grow = min(spare, natural[i] - widths[i])
            widths[i] += grow
            spare -= grow
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, GAP // 2), header_style="bold",
                  expand=False)
    for i in shown:
        c = cols[i]
        # "fold", never "ellipsis": a value wider than its column (it cannot be: widths are measured)
        # would break onto a second line rather than lose its digits.
        table.add_column(c.header, justify=c.justify, width=widths[i], no_wrap=not c.wrap, overflow="fold")
    for row in rows:
        table.add_row(*[row[i] if isinstance(row[i], Text) else Text(str(row[i])) for i in shown])
    return table


def print_table(file_or_console, cols: Sequence[Col], rows: Sequence[Sequence[Any]], *, layout: str = "pages",
                fixed: int = 1, width: int | None = None, left_out_hint: str = "--json, or a wider terminal") -> None:
    """Print a table that fits the terminal (at least 80 columns) without cutting a value.

    layout="pages": columns that do not fit go to further tables below, each repeating the first `fixed`
    columns (a narrow layout: nothing is left out). layout="drop": only the columns that fit, by
    priority, and one line naming the others and where to see them."""
    console = file_or_console if isinstance(file_or_console, Console) else _console(file_or_console, width)
    width = width or console.width
    if layout == "drop":
        shown = kept_columns(cols, rows, width)
        console.print(render_table(cols, rows, shown, width))
        left = [cols[i].header for i in range(len(cols)) if i not in shown]
        if left:
            console.print(Text(f"not shown at {width} columns: {', '.join(left)} ({left_out_hint})"), style="dim")
        return
    for n, shown in enumerate(table_pages(cols, rows, width, fixed)):
        if n:
            console.print()
        console.print(render_table(cols, rows, shown, width))


def print_runs_table(runs: list[dict[str, Any]], file) -> None:
    """`tokentop runs`: what fits the terminal, most useful first (the id, what ran, its figures); the
    columns left out are named under the table. Batch-1 TPS and per-user speed are separate columns."""
    from data.analysis.run_figures import BATCH1_HEADER, PER_USER_HEADER, split_speeds, what_ran

    console = _console(file)
    if not runs:
        console.print("no runs stored yet: run `tokentop bench` or open `tokentop`")
        return
    cols = [
        Col("run", priority=0),  # the id users copy into `tokentop show`: never wrapped
        Col("status", priority=1),
        Col("what", priority=2),
        Col("workload", wrap=True, min_width=12, priority=4),  # after the speeds, before TTFT
        Col(BATCH1_HEADER, "right", priority=3),
        Col(PER_USER_HEADER, "right", priority=3),
        Col("TTFT ms", "right", priority=4),
        Col("model", wrap=True, min_width=14, priority=5),
        Col("req", "right", priority=6),
        Col("started", priority=7),
        Col("device", wrap=True, min_width=10, priority=8),
        Col("where", wrap=True, min_width=10, priority=9),
        Col("engine", priority=10),
    ]
    rows = []
    for r in runs:
        started = r.get("started_at")
        b1, user = split_speeds(r, r.get("mean_tps"))
        rows.append([
            Text(r["run_id"]), Text(r.get("status") or ""), Text(what_ran(r)), Text(workload_name(r)),
            _fmt(b1, "{:.1f}"), _fmt(user, "{:.1f}"), _fmt(r.get("mean_ttft_ms"), "{:.1f}"),
            Text(model_name(r)), f"{r.get('completed') or 0}/{r.get('requests') or 0}",
            fmt_date(started) if started else "", Text(str(r.get("device") or "")), Text(where_short(r)),
            Text(r.get("engine") or ""),
        ])
    print_table(console, cols, rows, layout="drop", left_out_hint="`tokentop show RUN`, --json, or a wider terminal")


def print_roofline(roof: dict[str, Any] | None, run: dict[str, Any], file, why: str | None = None) -> None:
    from data.analysis.roofline import roofline_text

    console = _console(file)
    lines = roofline_text(roof, run.get("device"), why)
    console.print(Text("roofline: " + lines[0]), style="" if roof else "dim")
    for line in lines[1:]:
        console.print(Text("  " + line))
