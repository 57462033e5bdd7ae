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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

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
    if not chunks or not (record.success or record.aborted):
        return RequestMetrics(False, 0, record.input_tokens, None, None, None, (), record.st_ns / 1e9)
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
    return RequestMetrics(record.success, n, record.input_tokens, ttft, e2el, tpot, itl, st / 1e9, ttfo, reasoning, answer)


def metrics_from_offsets(
    chunk_offsets_ns: Sequence[int], output_tokens: int, success: bool = True, input_tokens: int | None = None
) -> RequestMetrics:
    """Recompute a request's metrics from stored chunk offsets (ns after st)."""
    record = RequestRecord(request=None, st_ns=0, chunk_ns=list(chunk_offsets_ns))  # type: ignore[arg-type]
    record.success = success and bool(chunk_offsets_ns)
    record.reported_output_tokens = output_tokens
    record.input_tokens = input_tokens
    return request_metrics(record)


def _stats(name: str, values_s: Sequence[float], percentiles: Iterable[float]) -> dict[str, float]:
    # `values or 0` mirrors vLLM: an empty list reports 0, not NaN.
    arr = np.asarray(values_s, dtype=float) if len(values_s) else 0
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
    """Aggregates named as `vllm bench serve` names them in its result JSON."""
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

    peak_tps, peak_concurrency = _peak_rates(ok)
    result: dict[str, float | int] = {
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
        "max_concurrent_requests": peak_concurrency,
    }
    for name, series in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        result.update(_stats(name, series, percentiles))
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
    result["mean_tps"] = float(np.mean(tps_values)) if tps_values else 0.0
    result["mean_decode_rate"] = 1000.0 / result["mean_tpot_ms"] if result["mean_tpot_ms"] else 0.0
    return result


def _peak_rates(ok: Sequence[RequestMetrics]) -> tuple[float, int]:
    """vLLM's max_output_tokens_per_s / max_concurrent_requests: tokens bucketed per second.
    Like vLLM, each chunk counts as one token here."""
    if not ok:
        return 0.0, 0
    t0 = min(m.start_s for m in ok)
    t_end = max(m.start_s + (m.e2el_s or 0) for m in ok)
    buckets = int(np.ceil(t_end - t0)) + 1
    tokens = np.zeros(buckets)
    concurrent = np.zeros(buckets)
    for m in ok:
        t = m.start_s + (m.ttft_s or 0)
        times = [t]
        for gap in m.itl_s:
            t += gap
            times.append(t)
        for tt in times:
            b = int(tt - t0)
            if 0 <= b < buckets:
                tokens[b] += 1
        for s in range(int(m.start_s - t0), int(m.start_s + (m.e2el_s or 0) - t0) + 1):
            concurrent[s] += 1
    return float(tokens.max()), int(concurrent.max())


def json_safe(value):
    """NaN/inf are not JSON: they become null (e.g. the throughput of a level that never ran)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
