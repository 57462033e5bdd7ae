"""Plain-text and JSON renderings of stored runs for the command line."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

def short(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def fmt_date(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone()
        return value.strftime("%Y-%m-%d %H:%M")
    return short(value, 16)


def model_name(run: dict) -> str:
    model = run.get("model") or "?"
    return model.rstrip("/").rsplit("/", 1)[-1] if "/" in model and model.startswith(("/", "~", ".")) else model


CASE_COLUMNS = [
    # (header, summary key, format)
    ("req", "completed", "{:.0f}"),
    ("tokens", "mean_output_tokens", "{:.0f}"),
    ("TTFT mean", "mean_ttft_ms", "{:.1f}"),
    ("TTFT p99", "p99_ttft_ms", "{:.1f}"),
    ("TPOT mean", "mean_tpot_ms", "{:.2f}"),
    ("ITL p99", "p99_itl_ms", "{:.2f}"),
    ("E2EL mean", "mean_e2el_ms", "{:.0f}"),
    ("TPS", "mean_tps", "{:.1f}"),
    ("decode tok/s", "mean_decode_rate", "{:.1f}"),
    ("out tok/s", "output_throughput", "{:.1f}"),
]


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
    console = _console(file)
    head = Text(
        f"run {run['run_id']}  {run['status']}  {run.get('engine')} · {run.get('model')} · {run.get('device')}"
    )
    console.print(head)
    where = where_line(run)
    if where:
        console.print(Text(where))
    table = Table(title=None, show_edge=False, pad_edge=False)
    table.add_column("case")
    table.add_column("target", justify="right")
    for header, _key, _f in CASE_COLUMNS:
        table.add_column(header, justify="right")
    for case_id, agg in case_rows(run):
        table.add_row(
            Text(case_id),
            _fmt(agg.get("target_tokens"), "{:.0f}"),
            *[_fmt(agg.get(key), f) for _h, key, f in CASE_COLUMNS],
        )
    console.print(table)
    console.print(
        Text(
            "ms throughout; TPS = output tokens / E2EL per request (the article's batch-1 TPS); "
            "decode tok/s = 1000 / TPOT; names and definitions as in `vllm bench serve`."
        ),
        style="dim",
    )
    failed = [r for r in requests if not r.get("success")]
    overall = (run.get("summary") or {}).get("overall") or {}
    if failed:
        console.print(Text(failures_line(overall, len(requests), len(failed), failed[0].get("error")), style="yellow"))
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
    text = f"{failed} of {total} request(s) failed or aborted ({100.0 * failed / total:.0f} %)" if total else \
        f"{failed} request(s) failed or aborted"
    if kinds:
        text += ": " + ", ".join(f"{kind} ×{n}" for kind, n in kinds.items())
    if first_error:
        text += f"; first: {safe_text(str(first_error))}"
    return text


def token_source_line(agg: dict[str, Any]) -> str | None:
    """How the run's output tokens were counted, when tokentop counted them itself."""
    from engine.measure.tokens import describe_source, is_estimated

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
                                   "http_status", "schedule_to_finish_ms")}
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


def _console(file) -> Console:
    # On a terminal use its width; piped output gets room enough not to squeeze ids and names.
    probe = Console(file=file)
    return Console(file=file, highlight=False, width=None if probe.is_terminal else 160)


def print_runs_table(runs: list[dict[str, Any]], file) -> None:
    console = _console(file)
    if not runs:
        console.print("no runs stored yet: run `tokentop bench` or open `tokentop`")
        return
    table = Table(show_edge=False, pad_edge=False)
    for col in ("run", "started", "status", "what", "engine · model", "device", "where", "req", "TPS", "TTFT ms"):
        # The run id is what users copy into `tokentop show`: never squeezed or wrapped.
        table.add_column(col, justify="right" if col in ("req", "TPS", "TTFT ms") else "left",
                         no_wrap=col in ("run", "started", "status"),
                         min_width=22 if col == "run" else None)
    for r in runs:
        started = r.get("started_at")
        what = r.get("suite") if r.get("kind") == "suite" else r.get("kind")
        table.add_row(
            Text(r["run_id"]),
            started.strftime("%Y-%m-%d %H:%M") if started else "",
            Text(r.get("status") or ""),
            Text(str(what or "")),
            Text(f"{r.get('engine') or ''} · {r.get('model') or ''}"),
            Text(str(r.get("device") or "")),
            Text(where_short(r)),
            f"{r.get('completed') or 0}/{r.get('requests') or 0}",
            _fmt(r.get("mean_tps"), "{:.1f}"),
            _fmt(r.get("mean_ttft_ms"), "{:.1f}"),
        )
    console.print(table)


def print_roofline(roof: dict[str, Any] | None, run: dict[str, Any], file, why: str | None = None) -> None:
    from data.load_runs import roofline_text

    console = _console(file)
    lines = roofline_text(roof, run.get("device"), why)
    console.print(Text("roofline: " + lines[0]), style="" if roof else "dim")
    for line in lines[1:]:
        console.print(Text("  " + line))


def workload_name(run: dict[str, Any]) -> str:
    """The label of the workload a stored run ran (data.workloads: legacy runs' derived too)."""
    from data.workloads import run_workload

    return run_workload(run)[1]
