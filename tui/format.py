"""Plain-text and JSON renderings of stored runs for the command line."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text


def short(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def plain_value(v: Any) -> str:
    """A stored value in words, never raw JSON: engine args as `key=value, ...`, a GPU list by names."""
    if isinstance(v, dict):
        return ", ".join(f"{k}={plain_value(x)}" for k, x in v.items() if x not in (None, "", [], {})) or "none"
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain_item(x) for x in v) or "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return "" if v is None else str(v)


def _plain_item(x: Any) -> str:
    if isinstance(x, dict):  # a GPU: its name, and the few fields that say which
        name = x.get("name") or x.get("key") or x.get("id")
        if name is not None:
            extra = " ".join(f"{k} {x[k]}" for k in ("index", "key", "memory_mb") if x.get(k) not in (None, "", name))
            return f"{name}" + (f" ({extra})" if extra else "")
    return plain_value(x)


def fmt_date(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone()
        return value.strftime("%Y-%m-%d %H:%M")
    return short(value, 16)


def model_name(run: dict) -> str:
    model = run.get("model") or "?"
    return model.rstrip("/").rsplit("/", 1)[-1] if "/" in model and model.startswith(("/", "~", ".")) else model


# (header, summary key, format): vLLM's names; latencies in ms (said under every table).
LATENCY_COLUMNS = [
    ("TTFT mean", "mean_ttft_ms", "{:.1f}"),
    ("TTFT med", "median_ttft_ms", "{:.1f}"),
    ("TTFT p99", "p99_ttft_ms", "{:.1f}"),
    ("TPOT mean", "mean_tpot_ms", "{:.2f}"),
    ("TPOT med", "median_tpot_ms", "{:.2f}"),
    ("ITL mean", "mean_itl_ms", "{:.2f}"),
    ("ITL med", "median_itl_ms", "{:.2f}"),
    ("ITL p99", "p99_itl_ms", "{:.2f}"),
    ("E2EL mean", "mean_e2el_ms", "{:.0f}"),
]
# What `vllm bench serve` prints first for a run under load: its duration, token totals, throughputs.
LOAD_HEADLINE_COLUMNS = [
    ("ok", "completed", "{:.0f}"),
    ("failed", "failed", "{:.0f}"),
    ("duration s", "duration", "{:.2f}"),
    ("in tok", "total_input_tokens", "{:.0f}"),
    ("out tok", "total_output_tokens", "{:.0f}"),
    ("req/s", "request_throughput", "{:.2f}"),
    ("out tok/s", "output_throughput", "{:.1f}"),
    ("total tok/s", "total_token_throughput", "{:.1f}"),
]
LATENCY_NOTE = ("TTFT, TPOT, ITL, E2EL in ms (mean, median, p99); names and definitions as in `vllm bench serve`; "
                "b1 TPS = output tokens / E2EL of a request run alone (the article's batch-1 TPS); "
                "user tok/s = the same with other requests beside it (per-user speed under load); "
                "decode tok/s = 1000 / TPOT.")


def case_columns(run: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The per-case (or per-level) table's columns for this run: a load level leads with vLLM's
    headline figures; the TPS column is named for what it is (b1 TPS or user tok/s)."""
    from data.analysis.run_figures import speed_header

    if run.get("kind") == "load":
        head = list(LOAD_HEADLINE_COLUMNS)
    else:
        head = [("req", "completed", "{:.0f}"), ("out tok/req", "mean_output_tokens", "{:.0f}")]
    tail = [(speed_header(run), "mean_tps", "{:.1f}"), ("decode tok/s", "mean_decode_rate", "{:.1f}")]
    if run.get("kind") != "load":
        tail.append(("out tok/s", "output_throughput", "{:.1f}"))
    return head + LATENCY_COLUMNS + tail


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


def _fmt(value: Any, pattern: str) -> str:
    if value is None:
        return "–"
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


def case_rows(run: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    summary = run.get("summary") or {}
    rows = []
    for case_id, agg in (summary.get("cases") or {}).items():
        agg = dict(agg)
        if agg.get("completed"):
            agg["mean_output_tokens"] = agg.get("total_output_tokens", 0) / agg["completed"]
        rows.append((case_id, agg))
    return rows


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


def failures_line(agg: dict[str, Any], total: int, failed: int, first_error: Any = None) -> str:
    """"5 of 10 requests failed (50 %): HTTP 503 ×3, HTTP 429 ×1, error in stream ×1; first: ..." """
    from engine.terminal_text import safe_text

    kinds = agg.get("failures_by_kind") or {}
    text = f"{failed} of {total} request(s) failed ({100.0 * failed / total:.0f} %)" if total else \
        f"{failed} request(s) failed"
    if kinds:
        text += ": " + ", ".join(f"{kind} ×{n}" for kind, n in kinds.items())
    if first_error:
        text += f"; first: {safe_text(str(first_error))}"
    return text


def token_source_line(agg: dict[str, Any]) -> str | None:
    """How the run's output tokens were counted, when tokentop counted them itself."""
    from engine.measure.token_counts import describe_source, is_estimated

    sources = [s for s in (agg.get("token_count_sources") or {}) if s not in ("usage", "engine", "unknown")]
    if not sources:
        return None
    word = "estimated" if any(is_estimated(s) for s in sources) else "counted by tokentop"
    return f"output tokens {word}: " + "; ".join(describe_source(s) for s in sources)


def stream_lines(agg: dict[str, Any], requests: list[dict[str, Any]]) -> list[str]:
    """What the stream itself said beyond vLLM's figures: how tokens were counted, requests that
    stopped early ("asked N, got M"), content that came after an empty first chunk (TTFC), and the
    schedule-to-finish latency of a load level."""
    from engine.terminal_text import safe_text

    lines = []
    line = token_source_line(agg)
    if line:
        lines.append(line)
    early = [r for r in requests if r.get("stopped_early")]
    if early:
        shown = ", ".join(f"#{r.get('request_index')} asked {r.get('asked_tokens')}, got {r.get('output_tokens')}"
                          + (f" ({safe_text(str(r['finish_reason']))})" if r.get("finish_reason") else "")
                          for r in early[:3])
        more = f" and {len(early) - 3} more" if len(early) > 3 else ""
        lines.append(f"stopped early: {len(early)} request(s) got fewer tokens than they enforced: {shown}{more}")
    empty = int(agg.get("first_chunk_empty") or 0)
    if empty:
        lines.append(f"first content: TTFC mean {_fmt(agg.get('mean_ttfc_ms'), '{:.1f}')} / p99 "
                     f"{_fmt(agg.get('p99_ttfc_ms'), '{:.1f}')} ms; {empty} request(s) began with a chunk that "
                     "carried no text (TTFT counts it, as vLLM does)")
    if agg.get("mean_schedule_to_finish_ms") is not None:
        lines.append("schedule-to-finish (scheduled send to last token, client queue included): mean "
                     f"{_fmt(agg.get('mean_schedule_to_finish_ms'), '{:.0f}')} / p50 "
                     f"{_fmt(agg.get('p50_schedule_to_finish_ms'), '{:.0f}')} / p99 "
                     f"{_fmt(agg.get('p99_schedule_to_finish_ms'), '{:.0f}')} ms")
    return lines


def reasoning_line(agg: dict[str, Any]) -> str | None:
    """One line for a run whose responses carried reasoning: the token split and TTFO."""
    if agg.get("total_reasoning_tokens") is None:
        return None
    return (f"reasoning: {agg['total_reasoning_tokens']} reasoning + {agg.get('total_answer_tokens', 0)} answer "
            f"tokens; TTFO (first answer token) mean {_fmt(agg.get('mean_ttfo_ms'), '{:.1f}')} / median "
            f"{_fmt(agg.get('median_ttfo_ms'), '{:.1f}')} / p99 {_fmt(agg.get('p99_ttfo_ms'), '{:.1f}')} ms "
            f"(TTFT counts the first chunk of any kind)")


def client_health_of(run: dict[str, Any]) -> dict[str, Any]:
    health = run.get("client_health")
    if isinstance(health, str):
        import json

        health = json.loads(health)
    return health or (run.get("summary") or {}).get("client_health") or {}


def client_health_lines(health: dict[str, Any]) -> list[tuple[str, str]]:
    """(text, style) lines: the self-check figures (dim), then its warnings (yellow) and notes (dim)."""
    if not health:
        return []
    parts = []
    loop = health.get("loop_lag_ms") or {}
    if loop:
        parts.append(f"loop lag p99 {loop.get('p99', 0):.1f} ms")
    send = health.get("send_lag_ms") or {}
    if send:
        parts.append(f"send lag p99 {send.get('p99', 0):.1f} ms")
    queue = health.get("queue_wait_ms") or {}
    if queue:
        parts.append(f"queue wait mean {queue.get('mean', 0):.0f} ms")
    if health.get("tokens_per_chunk") is not None:
        parts.append(f"{health['tokens_per_chunk']:.2f} tokens/chunk")
    cpu = [c for c in health.get("client_cpu") or [] if isinstance(c, dict)]
    if cpu:
        busiest = max(float(c.get("loop_runnable") or 0.0) for c in cpu)
        cores = sum(float(c.get("process_cores") or 0.0) for c in cpu)
        who = "loop" if len(cpu) == 1 else f"{len(cpu)} processes, busiest loop"
        parts.append(f"{who} busy {busiest:.0%}, {cores:.2f} cores")
    lines = [(f"client self-check: {', '.join(parts)}", "dim")] if parts else []
    lines += [(f"warning: {w}", "yellow") for w in health.get("warnings") or []]
    lines += [(f"note: {n}", "dim") for n in health.get("notes") or []]
    return lines


def run_to_json(run: dict[str, Any], requests: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    summary = run.get("summary") or {}
    out = {
        "run_id": run["run_id"],
        "kind": run.get("kind"),
        "status": run.get("status"),
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "duration_s": run.get("duration_s"),
        "engine": run.get("engine"),
        "engine_args": run.get("engine_args"),
        "model": run.get("model"),
        "dtype": run.get("dtype"),
        "device": run.get("device"),
        "gpu_key": run.get("gpu_key"),
        "gpu_count": run.get("gpu_count"),
        "gpus_used": run.get("gpus_used"),
        "location": location_of(run),
        "suite": run.get("suite"),
        "reps": run.get("reps"),
        "workload": workload_of(run),
        "environment": run.get("environment"),
        "cases": summary.get("cases") or {},
        "overall": summary.get("overall") or {},
        "error": run.get("error"),
        "client_health": client_health_of(run) or None,
        "warnings": list((client_health_of(run) or {}).get("warnings") or []),
        # schema 006: how the output tokens were counted, and the run's failures
        "token_count_source": run.get("token_count_source"),
        "output_tokens_estimated": run.get("output_tokens_estimated"),
        "failures": {"failed": run.get("failed_requests"), "failure_rate": run.get("failure_rate"),
                     "by_kind": run.get("failures_by_kind") or {}, "stopped_early": run.get("stopped_early")},
    }
    if requests is not None:
        out["requests"] = [
            {k: r.get(k) for k in ("request_index", "case_id", "rep", "input_tokens", "output_tokens",
                                   "target_tokens", "ttft_ms", "tpot_ms", "e2el_ms", "tps", "success",
                                   "finish_reason", "error", "ttfo_ms", "reasoning_tokens", "answer_tokens",
                                   "send_lag_ms", "queue_wait_ms", "token_count_source", "ttfc_ms",
                                   "first_chunk_empty", "asked_tokens", "stopped_early", "error_kind",
                                   "http_status", "schedule_to_finish_ms",
                                   # schema 011: the server's own timing (engine.measure.server_timing)
                                   "server_ttft_ms", "server_queue_time_ms", "server_generation_time_ms",
                                   "server_mean_itl_ms", "server_tokens_per_second", "server_timing_source",
                                   "spec_acceptance_rate", "spec_acceptance_length", "spec_accepted_tokens",
                                   "spec_draft_tokens", "spec_steps")}
            for r in requests
        ]
    return out


def location_of(run: dict[str, Any]) -> dict[str, Any]:
    """Where the run ran and what the instance cost, from the run's columns."""
    return {k: run.get(k) for k in ("provider", "provider_source", "instance_id", "instance_type", "region",
                                    "price_per_hour_usd")}


def where_short(run: dict[str, Any]) -> str:
    """"RunPod · $2.49/h paid", "Vast.ai", "" — for narrow columns."""
    from pricing.models import provider_label

    parts = []
    if run.get("provider"):
        parts.append(provider_label(run["provider"]))
    if run.get("price_per_hour_usd"):
        parts.append(f"${run['price_per_hour_usd']:.2f}/h paid")
    return " · ".join(parts)


def where_line(run: dict[str, Any]) -> str:
    """One line: provider (and how it was known), instance, region, price paid, the GPUs used."""
    parts = []
    short = where_short(run)
    if short:
        parts.append(short)
    if run.get("provider_source"):
        parts.append(f"from {run['provider_source']}")
    if run.get("instance_type") or run.get("instance_id"):
        parts.append("instance " + " ".join(str(x) for x in (run.get("instance_type"), run.get("instance_id")) if x))
    if run.get("region"):
        parts.append(f"region {run['region']}")
    used = run.get("gpus_used")
    if isinstance(used, list) and used:
        parts.append(f"GPUs used {','.join(str(g.get('index')) for g in used)} ({len(used)}× {used[0].get('name')})")
    return ("where: " + " · ".join(parts)) if parts else ""


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


def workload_name(run: dict[str, Any]) -> str:
    """The label of the workload a stored run ran (data.analysis.workload_labels: legacy runs' derived too)."""
    from data.analysis.workload_labels import run_workload

    return run_workload(run)[1]


def workload_of(run: dict[str, Any]) -> dict[str, Any]:
    """A stored run's workload for `show`: {"label", "key"} and, for runs stored since workloads were
    recorded, their identity (kind, params, file, seed, tokenizer: engine.workloads.base.Workload.identity)."""
    from data.analysis.workload_labels import run_workload

    key, label = run_workload(run)
    identity = run.get("workload") if isinstance(run.get("workload"), dict) else {}
    return {**identity, "label": label, "key": key}
