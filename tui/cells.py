"""Cell formatting: the text of one value, figure or line of a stored run as tables and screens show it (dates,
model and workload names, latency columns and rows, failure, token-source, stream, reasoning and client-health
lines, where a run ran, a run as JSON). No Rich and no layout here: tui.tables lays these out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping, Sequence

from data.analysis.run_figures import BATCH1_HEADER, PER_USER_HEADER


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


@dataclass(frozen=True)
class LoadColumn:
    """One column of the load-level table, declared once for `tokentop load` and the Load screen (they
    show the same columns from the same rows: load_columns). header: the column's name; field: the
    stored level's key (vLLM's name, engine.load.results.LevelSummary.to_dict; "b1_tps" and "user_tps" are
    data.analysis.run_figures.split_speeds's two halves of mean_tps); fmt: a str.format pattern; when:
    "" always, "slo" only when the run has SLOs (goodput), "external" only when a level has a KV connector's
    tier (its hit rate); align: "left" or "right"."""

    header: str
    field: str
    fmt: str
    when: str = ""
    align: str = "right"


def _load_column(spec: tuple[str, str, str]) -> LoadColumn:
    return LoadColumn(*spec)


# The load-level table: level, vLLM's headline figures (LOAD_HEADLINE_COLUMNS) with `stopped` beside the
# failures, prefix-cache hits, peak tok/s, TTFT/TPOT/ITL mean, median and p99 (ms), the two speeds, goodput
# under SLOs, energy per output token, and the stored run.
LOAD_TABLE_COLUMNS: tuple[LoadColumn, ...] = (
    LoadColumn("level", "label", "{}", align="left"),
    *map(_load_column, LOAD_HEADLINE_COLUMNS[:2]),
    LoadColumn("stopped", "aborted", "{:.0f}"),
    *map(_load_column, LOAD_HEADLINE_COLUMNS[2:]),
    LoadColumn("hit %", "prefix_cache_hit_rate", "{:.0%}"),
    LoadColumn("ext hit %", "prefix_cache_external_hit_rate", "{:.0%}", when="external"),
    LoadColumn("peak tok/s", "max_output_tokens_per_s", "{:.0f}"),
    LoadColumn("TTFT mean", "mean_ttft_ms", "{:.1f}"),
    LoadColumn("TTFT med", "median_ttft_ms", "{:.1f}"),
    LoadColumn("TTFT p99", "p99_ttft_ms", "{:.1f}"),
    LoadColumn("TPOT mean", "mean_tpot_ms", "{:.2f}"),
    LoadColumn("TPOT med", "median_tpot_ms", "{:.2f}"),
    LoadColumn("TPOT p99", "p99_tpot_ms", "{:.2f}"),
    LoadColumn("ITL mean", "mean_itl_ms", "{:.2f}"),
    LoadColumn("ITL med", "median_itl_ms", "{:.2f}"),
    LoadColumn("ITL p99", "p99_itl_ms", "{:.2f}"),
    LoadColumn(BATCH1_HEADER, "b1_tps", "{:.1f}"),
    LoadColumn(PER_USER_HEADER, "user_tps", "{:.1f}"),
    LoadColumn("goodput", "request_goodput", "{:.2f}", when="slo"),
    LoadColumn("J/tok", "j_per_output_token", "{:.3f}"),
    LoadColumn("run", "run_id", "{}", align="left"),
)


def load_columns(rows: Sequence[Mapping[str, Any]], slo_ms: Mapping[str, float] | None = None) -> list[LoadColumn]:
    """The columns of LOAD_TABLE_COLUMNS shown for these levels (stored level dicts: data.jobs.load.LevelRow.to_dict):
    every one, goodput when the run has SLOs (slo_ms, or a level with request_goodput), the external tier's
    hit rate when a level has one. The same rule for the command and the screen; at 80 columns both page
    the columns with the level kept."""
    slo = bool(slo_ms) or any(r.get("request_goodput") is not None for r in rows)
    external = any(r.get("prefix_cache_external_hit_rate") is not None for r in rows)
    shown = {"": True, "slo": slo, "external": external}
    return [c for c in LOAD_TABLE_COLUMNS if shown[c.when]]


def load_cell(row: Mapping[str, Any], column: LoadColumn, none: str = "–") -> str:
    """One level's text in a column: the value under column.fmt, `none` where there is none (or it is not
    finite). failed reads "N (P%)" when requests failed; goodput "R (N)" with the good requests ("– (0)" with
    none)."""
    import math

    if column.field in ("b1_tps", "user_tps"):
        from data.analysis.run_figures import split_speeds

        b1, user = split_speeds({"kind": "load", **row}, row.get("mean_tps"))
        value = b1 if column.field == "b1_tps" else user
    else:
        value = row.get(column.field)
    good = f" ({row.get('good_requests', 0)})" if column.field == "request_goodput" else ""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return none + good
    if column.field == "failed" and value and row.get("failure_rate"):
        return f"{int(value)} ({100 * row['failure_rate']:.0f}%)"
    return column.fmt.format(value) + good


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
