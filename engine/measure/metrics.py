"""Metrics exactly as `vllm bench serve` defines them (vllm/benchmarks/serve.py:calculate_metrics).

Per request (from raw perf_counter_ns timestamps):
  TTFT  = first chunk carrying choices - st
  ITL   = gaps between successive chunks after the first (pooled over requests)
  E2EL  = last chunk - st
  TPOT  = (E2EL - TTFT) / (output_tokens - 1), only for requests with > 1 token
Aggregates: mean, median, std, percentiles (numpy linear) in ms; request/output/total throughput
over the benchmark duration; goodput = requests meeting every SLO / duration. Failed requests are
excluded from latency stats but not from the duration.

The article's "TPS" for one request at batch 1 is output tokens / E2EL; its decode rate is 1000/TPOT.

Where tokentop differs from vLLM's calculate_metrics on purpose (the same numbers whenever vLLM's
are defined):
  * an aggregate over no values (the TPOT of only 1-token requests, the TTFT of a level where every
    request failed) is None (JSON null, "–" on screen), where vLLM reports 0 (`np.mean(x or 0)`);
  * max_output_tokens_per_s buckets each chunk's token count; vLLM counts every chunk as one token
    (so a role-only first chunk counts and a 4-token chunk counts once: vLLM #27485). vLLM's figure
    is kept as max_output_chunks_per_s. They are equal when every chunk carries one token.
Added beside vLLM's names: TTFC (first chunk with text or reasoning), schedule-to-finish latency
(load levels), failure rate and failures by kind, requests that stopped early, and which source the
token counts came from (engine.measure.tokens).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from engine.measure.tokens import is_estimated
from engine.types import RequestRecord

DEFAULT_PERCENTILES = (99.0,)


@dataclass(frozen=True)
class RequestMetrics:
    success: bool
    output_tokens: int
    input_tokens: int | None
    ttft_s: float | None
    e2el_s: float | None
    tpot_s: float | None  # None when output_tokens <= 1
    itl_s: tuple[float, ...]
    start_s: float  # st in seconds (perf_counter clock), for peak-rate bucketing
    # Reasoning models (None when the response carried no reasoning): time to the first answer
    # token (TTFO; TTFT counts the first chunk of any kind, as vLLM's bench does), and the split.
    ttfo_s: float | None = None
    reasoning_tokens: int | None = None
    answer_tokens: int | None = None
    # Tokens per chunk (the counts peak tok/s buckets), and where they came from (tokens.SOURCES).
    chunk_tokens: tuple[int, ...] = ()
    token_count_source: str | None = None
    # TTFC: the first chunk that carried text or reasoning - st; first_chunk_empty: the first chunk
    # (TTFT's) carried neither (a role-only event), so TTFT came before any content.
    ttfc_s: float | None = None
    first_chunk_empty: bool = False
    finish_reason: str | None = None
    # The length the request enforced (min_tokens = max_tokens, ignore_eos), None when not enforced;
    # stopped_early: it succeeded with fewer tokens than that ("asked N, got M").
    asked_tokens: int | None = None
    stopped_early: bool = False
    error_kind: str | None = None  # base.Engine.generate / RequestRecord.error_kind
    http_status: int | None = None
    # Load levels: the last chunk - when the load pattern scheduled the request (the wait on the
    # client's own concurrency limit included: what the service's user waits, vLLM #54101).
    schedule_to_finish_s: float | None = None

    @property
    def tps(self) -> float | None:
        """The article's batch-1 TPS: output tokens / E2EL."""
        if not self.e2el_s or self.e2el_s <= 0:
            return None
        return self.output_tokens / self.e2el_s

    @property
    def decode_rate(self) -> float | None:
        """Tokens per second after the first token: 1 / TPOT."""
        if not self.tpot_s or self.tpot_s <= 0:
            return None
        return 1.0 / self.tpot_s


def itl_gaps_s(chunk_ns: Sequence[int]) -> tuple[float, ...]:
    """ITL as vLLM defines it: the gaps between successive chunks of one request, in seconds.
    Used for live requests and to recompute stored runs (run detail, CLI) alike."""
    return tuple((b - a) / 1e9 for a, b in zip(chunk_ns, chunk_ns[1:]))


def request_metrics(record: RequestRecord) -> RequestMetrics:
    """A finished request's metrics. A request stopped mid-stream keeps what it streamed (TTFT,
    tokens, partial TPS) but stays unsuccessful, so aggregates never count it."""
    chunks = record.chunk_ns
    request = record.request
    asked = getattr(request, "max_tokens", None) if getattr(request, "enforce_length", False) else None
    if not chunks or not (record.success or record.aborted):
        return RequestMetrics(False, 0, record.input_tokens, None, None, None, (), record.st_ns / 1e9,
                              finish_reason=record.finish_reason, asked_tokens=asked,
                              error_kind=record.error_kind or ("other" if not record.success else None),
                              http_status=record.http_status,
                              token_count_source=record.token_count_source)
    st = record.st_ns
    ttft = (chunks[0] - st) / 1e9
    e2el = (chunks[-1] - st) / 1e9
    itl = itl_gaps_s(chunks)
    n = record.output_tokens
    tpot = (e2el - ttft) / (n - 1) if n > 1 else None
    ttfo = reasoning = answer = None
    if record.has_reasoning:
        reasoning, answer = record.reasoning_tokens, record.answer_tokens
        ttfo = (record.first_answer_ns - st) / 1e9 if record.first_answer_ns else None
    ttfc = (record.first_content_ns - st) / 1e9 if record.first_content_ns else None
    s2f = (chunks[-1] - record.scheduled_ns) / 1e9 if record.scheduled_ns is not None else None
    return RequestMetrics(
        record.success, n, record.input_tokens, ttft, e2el, tpot, itl, st / 1e9, ttfo, reasoning, answer,
        chunk_tokens=tuple(record.chunk_tokens), token_count_source=record.token_count_source,
        ttfc_s=ttfc, first_chunk_empty=_first_chunk_empty(record),
        finish_reason=record.finish_reason, asked_tokens=asked,
        stopped_early=bool(record.success and asked is not None and n < asked),
        error_kind=record.error_kind if not record.success else None,
        http_status=record.http_status if not record.success else None,
        schedule_to_finish_s=s2f)


def _first_chunk_empty(record: RequestRecord) -> bool:
    """The first chunk carried no text or reasoning. Engines that track content set first_content_ns;
    one that tracked it (token_count_source set) and saw none at all had only empty chunks."""
    if record.first_content_ns is not None:
        return record.first_content_ns > record.chunk_ns[0]
    return record.token_count_source is not None


def metrics_from_offsets(
    chunk_offsets_ns: Sequence[int], output_tokens: int, success: bool = True, input_tokens: int | None = None,
    chunk_tokens: Sequence[int] | None = None,
) -> RequestMetrics:
    """Recompute a request's metrics from stored chunk offsets (ns after st) and, when stored, the
    tokens each chunk carried."""
    record = RequestRecord(request=None, st_ns=0, chunk_ns=list(chunk_offsets_ns),  # type: ignore[arg-type]
                           chunk_tokens=list(chunk_tokens or []))
    record.success = success and bool(chunk_offsets_ns)
    record.reported_output_tokens = output_tokens
    record.input_tokens = input_tokens
    return request_metrics(record)


def _stats(name: str, values_s: Sequence[float], percentiles: Iterable[float]) -> dict[str, float | None]:
    """mean/median/std/percentiles in ms. Over no values every one is None (vLLM reports 0 there,
    `np.mean(x or 0)`: a mean TPOT of 0.00 for 1-token requests reads as infinitely fast)."""
    if not len(values_s):
        out: dict[str, float | None] = {f"{k}_{name}_ms": None for k in ("mean", "median", "std")}
        out.update({f"p{_pct_label(p)}_{name}_ms": None for p in percentiles})
        return out
    arr = np.asarray(values_s, dtype=float)
    out = {
        f"mean_{name}_ms": float(np.mean(arr) * 1000),
        f"median_{name}_ms": float(np.median(arr) * 1000),
        f"std_{name}_ms": float(np.std(arr) * 1000),
    }
    for p in percentiles:
        out[f"p{_pct_label(p)}_{name}_ms"] = float(np.percentile(arr, p) * 1000)
    return out


def _pct_label(p: float) -> str:
    return str(int(p)) if float(p).is_integer() else str(p)


def aggregate(
    metrics: Sequence[RequestMetrics],
    duration_s: float,
    percentiles: Iterable[float] = DEFAULT_PERCENTILES,
    slo_ms: dict[str, float] | None = None,
) -> dict[str, float | int]:
    """Aggregates named as `vllm bench serve` names them in its result JSON (ms, tokens, requests/s,
    tokens/s), the same numbers as vllm.benchmarks.serve.calculate_metrics wherever vLLM's are
    defined (see the module docstring for where they differ on purpose), plus failure_rate,
    failures_by_kind, stopped_early, first_chunk_empty, token_count_sources, output_tokens_estimated,
    the TTFC statistics and, for load levels, the schedule-to-finish statistics."""
    percentiles = tuple(percentiles)
    ok = [m for m in metrics if m.success]
    ttfts = [m.ttft_s for m in ok]
    e2els = [m.e2el_s for m in ok]
    tpots = [m.tpot_s for m in ok if m.tpot_s is not None]
    all_tpots = [m.tpot_s or 0.0 for m in ok]  # vLLM: TPOT of a 1-token request counts as 0 for goodput
    itls = [x for m in ok for x in m.itl_s]
    total_output = sum(m.output_tokens for m in ok)
    total_input = sum(m.input_tokens or 0 for m in ok)
    dur = duration_s if duration_s > 0 else float("nan")

    good = 0
    if slo_ms:
        columns, limits = [], []
        for key, series in (("ttft", ttfts), ("tpot", all_tpots), ("e2el", e2els)):
            if key in slo_ms:
                columns.append(series)
                limits.append(slo_ms[key] / 1000.0)
        for values in zip(*columns):
            if all(limit >= value for limit, value in zip(limits, values)):
                good += 1

    peak_tps, peak_chunks, peak_concurrency = _peak_rates(ok)
    failed = [m for m in metrics if not m.success]
    result: dict[str, Any] = {
        "duration": float(duration_s),
        "completed": len(ok),
        "failed": len(metrics) - len(ok),
        "total_input_tokens": int(total_input),
        "total_output_tokens": int(total_output),
        "request_throughput": len(ok) / dur,
        "request_goodput": good / dur if slo_ms else None,
        "output_throughput": total_output / dur,
        "total_token_throughput": (total_input + total_output) / dur,
        "max_output_tokens_per_s": peak_tps,
        "max_output_chunks_per_s": peak_chunks,
        "max_concurrent_requests": peak_concurrency,
        # Failures: the share of requests that failed, and how (HTTP status, error in the stream, ...).
        "failure_rate": len(failed) / len(metrics) if metrics else None,
        "failures_by_kind": failure_counts(failed),
        # Requests that enforced a length and got fewer tokens ("asked N, got M").
        "stopped_early": sum(1 for m in ok if m.stopped_early),
        "first_chunk_empty": sum(1 for m in ok if m.first_chunk_empty),
    }
    sources: dict[str, int] = {}
    for m in ok:
        key = m.token_count_source or "unknown"
        sources[key] = sources.get(key, 0) + 1
    result["token_count_sources"] = sources
    result["output_tokens_estimated"] = any(is_estimated(m.token_count_source) for m in ok)
    for name, series in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        result.update(_stats(name, series, percentiles))
    result.update(_stats("ttfc", [m.ttfc_s for m in ok if m.ttfc_s is not None], percentiles))
    s2f = [m.schedule_to_finish_s for m in ok if m.schedule_to_finish_s is not None]
    if s2f:  # load levels: what the service's user waits, the client's own queue included
        result.update(_stats("schedule_to_finish", s2f, percentiles))
    reasoning = [m for m in ok if m.reasoning_tokens is not None]
    if reasoning:
        # Reasoning models: TTFO over the requests that reached their answer, and the token split.
        result.update(_stats("ttfo", [m.ttfo_s for m in reasoning if m.ttfo_s is not None], percentiles))
        result["reasoning_requests"] = len(reasoning)
        result["total_reasoning_tokens"] = int(sum(m.reasoning_tokens or 0 for m in reasoning))
        result["total_answer_tokens"] = int(sum(m.answer_tokens or 0 for m in reasoning)
                                            + sum(m.output_tokens for m in ok if m.reasoning_tokens is None))
        result["answer_throughput"] = result["total_answer_tokens"] / dur
    tps_values = [m.tps for m in ok if m.tps is not None]
    result["mean_tps"] = float(np.mean(tps_values)) if tps_values else None
    result["mean_decode_rate"] = 1000.0 / result["mean_tpot_ms"] if result["mean_tpot_ms"] else None
    return result


def failure_label(kind: str | None, http_status: int | None = None) -> str:
    """How a failure is named in counts and on screen: "HTTP 503", "error in stream", "timeout"..."""
    if kind == "http":
        return f"HTTP {http_status}" if http_status else "HTTP error"
    return {"stream": "error in stream", None: "other"}.get(kind, kind or "other")


def failure_counts(failed: Sequence[RequestMetrics]) -> dict[str, int]:
    """{label: count} of failed requests by kind, most frequent first (failure_label)."""
    counts: dict[str, int] = {}
    for m in failed:
        label = failure_label(m.error_kind, m.http_status)
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _peak_rates(ok: Sequence[RequestMetrics]) -> tuple[float, float, int]:
    """vLLM's max_output_tokens_per_s / max_concurrent_requests: output bucketed per second from the
    first send. Returns (peak tokens/s — each chunk's token count, peak chunks/s — vLLM's own figure,
    which counts every chunk as one token, peak concurrent requests)."""
    if not ok:
        return 0.0, 0.0, 0
    t0 = min(m.start_s for m in ok)
    t_end = max(m.start_s + (m.e2el_s or 0) for m in ok)
    buckets = int(np.ceil(t_end - t0)) + 1
    tokens = np.zeros(buckets)
    chunks = np.zeros(buckets)
    concurrent = np.zeros(buckets)
    for m in ok:
        t = m.start_s + (m.ttft_s or 0)
        times = [t]
        for gap in m.itl_s:
            t += gap
            times.append(t)
        counts = m.chunk_tokens if len(m.chunk_tokens) == len(times) else _even_counts(m.output_tokens, len(times))
        for tt, k in zip(times, counts):
            b = int(tt - t0)
            if 0 <= b < buckets:
                tokens[b] += k
                chunks[b] += 1
        for s in range(int(m.start_s - t0), int(m.start_s + (m.e2el_s or 0) - t0) + 1):
            concurrent[s] += 1
    return float(tokens.max()), float(chunks.max()), int(concurrent.max())


def _even_counts(total: int, n: int) -> list[int]:
    """Stored runs recomputed without per-chunk counts: the total spread over the chunks."""
    if n <= 0:
        return []
    q, r = divmod(max(0, int(total)), n)
    return [q + (1 if i < r else 0) for i in range(n)]


def json_safe(value):
    """NaN/inf are not JSON: they become null (e.g. the throughput of a level that never ran)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def failure_note(agg: dict) -> str | None:
    """A level's (or run's) failures in one line, or None when nothing failed:
    "5 of 10 failed (50 %): HTTP 503 ×3, HTTP 429 ×1, error in stream ×1"."""
    failed = int(agg.get("failed") or 0)
    if not failed:
        return None
    total = failed + int(agg.get("completed") or 0)
    text = f"{failed} of {total} failed ({100.0 * failed / total:.0f} %)"
    kinds = agg.get("failures_by_kind") or {}
    if kinds:
        text += ": " + ", ".join(f"{kind} ×{n}" for kind, n in kinds.items())
    return text
