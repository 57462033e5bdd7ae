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
max_concurrent_requests is the exact peak of requests in flight, as vLLM computes it after 0.32
(vllm/benchmarks/serve.py calculate_metrics at HEAD, commit 009e6d4: a sweep over [start, start + latency) half-open
intervals, an end sorted before a start at the same instant). vLLM 0.32 counted, per whole second
from the first send, every request active at any time in that second: five back-to-back requests at
concurrency 1 read as a peak of 2 to 5. peak tok/s (max_output_tokens_per_s) is still bucketed per
whole second, as vLLM HEAD still does.

Steady state (steady_state()): the figures over a level's plateau — while the requests in flight are
at least 95 % of the level's concurrency — by the rule of vLLM's Rust client vllm-bench
(src/metrics/steady_state.rs, detect_window and compute); see steady_state() for the rule.
Added beside vLLM's names: TTFC (first chunk with text or reasoning), schedule-to-finish latency
(load levels), failure rate and failures by kind, requests that stopped early, and which source the
token counts came from (engine.measure.token_counts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping, Protocol, Sequence

import numpy as np

from engine.measure.token_counts import is_estimated
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
    Used for live requests and to recompute stored runs (run detail, CLI) alike. Long streams in
    numpy: exact integer differences, each divided by 1e9 as Python does (the same floats)."""
    ns = np.asarray(chunk_ns) if len(chunk_ns) >= 64 else None
    if ns is None or ns.dtype.kind != "i":  # short, or not whole nanoseconds: one pair at a time
        return tuple((b - a) / 1e9 for a, b in zip(chunk_ns, chunk_ns[1:]))
    return tuple((np.diff(ns) / 1e9).tolist())


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


@dataclass(frozen=True)
class LatencyStats:
    """One latency's statistics over a level's successful requests, in ms (vllm/benchmarks/serve.py's
    mean_/median_/std_/percentiles_<name>_ms). Over no values every one is None (vLLM reports 0 there,
    `np.mean(x or 0)`: a mean TPOT of 0.00 for 1-token requests reads as infinitely fast).
    percentiles_ms: ((p, value ms), ...) in the order asked, as vLLM's percentiles_<name>_ms."""

    mean_ms: float | None
    median_ms: float | None
    std_ms: float | None
    percentiles_ms: tuple[tuple[float, float | None], ...]

    @classmethod
    def of(cls, values_s: Sequence[float], percentiles: Iterable[float]) -> "LatencyStats":
        """The statistics of values in seconds (numpy: population std, linear percentiles)."""
        if not len(values_s):
            return cls(None, None, None, tuple((float(p), None) for p in percentiles))
        arr = np.asarray(values_s, dtype=float)
        return cls(
            float(np.mean(arr) * 1000),
            float(np.median(arr) * 1000),
            float(np.std(arr) * 1000),
            tuple((float(p), float(np.percentile(arr, p) * 1000)) for p in percentiles),
        )

    def percentile_ms(self, p: float) -> float | None:
        """The p-th percentile (ms), None when it was not asked for or there were no values."""
        return next((value for q, value in self.percentiles_ms if q == p), None)

    def to_dict(self, name: str) -> dict[str, float | None]:
        """The result JSON's keys for this latency: mean_<name>_ms, median_, std_, p<label>_<name>_ms."""
        out: dict[str, float | None] = {
            f"mean_{name}_ms": self.mean_ms,
            f"median_{name}_ms": self.median_ms,
            f"std_{name}_ms": self.std_ms,
        }
        for p, value in self.percentiles_ms:
            out[f"p{_pct_label(p)}_{name}_ms"] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], name: str) -> "LatencyStats | None":
        """Read back what to_dict(name) wrote (None when d has no mean_<name>_ms key)."""
        if f"mean_{name}_ms" not in d:
            return None
        suffix = f"_{name}_ms"
        pcts = []
        for key, value in d.items():
            label = key[1 : -len(suffix)] if key.startswith("p") and key.endswith(suffix) else ""
            if label and _is_number(label):
                pcts.append((float(label), value))
        return cls(d[f"mean_{name}_ms"], d.get(f"median_{name}_ms"), d.get(f"std_{name}_ms"), tuple(pcts))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _stats(name: str, values_s: Sequence[float], percentiles: Iterable[float]) -> dict[str, float | None]:
    """mean/median/std/percentiles in ms under the result JSON's keys (LatencyStats.of(...).to_dict(name))."""
    return LatencyStats.of(values_s, percentiles).to_dict(name)


def _pct_label(p: float) -> str:
    return str(int(p)) if float(p).is_integer() else str(p)


# The latencies BenchmarkMetrics carries, in the order its result JSON lists them.
_LATENCIES = ("ttft", "tpot", "itl", "e2el", "ttfc", "schedule_to_finish", "ttfo")
# Keys BenchmarkMetrics.to_dict writes itself (the rest of a stored summary is kept in `extra`).
_SCALARS = (
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
    "request_goodput", "output_throughput", "total_token_throughput", "max_output_tokens_per_s",
    "max_output_chunks_per_s", "max_concurrent_requests", "failure_rate", "failures_by_kind", "stopped_early",
    "first_chunk_empty", "token_count_sources", "output_tokens_estimated",
)
_REASONING = ("reasoning_requests", "total_reasoning_tokens", "total_answer_tokens", "answer_throughput")


@dataclass(frozen=True)
class BenchmarkMetrics:
    """A level's (or a suite case's, or a run's) figures: vllm/benchmarks/serve.py's BenchmarkMetrics
    (its field names; total_input/total_output are the result JSON's total_input_tokens/
    total_output_tokens), with tokentop's additions (see the module docstring). Units: ms, tokens,
    requests/s, tokens/s; duration in s. A figure over no values is None.

    Inside engine/ this is the value; at the JSON and store boundary it is `to_dict()` — exactly the
    dict `aggregate()` has always returned, keys in the same order — and `from_dict()` reads a stored
    one back (keys it does not know, e.g. goodput or target_tokens added later, are kept in `extra`
    and written back after its own)."""

    duration: float
    completed: int
    failed: int
    total_input: int
    total_output: int
    request_throughput: float
    request_goodput: float | None
    output_throughput: float
    total_token_throughput: float
    max_output_tokens_per_s: float
    max_output_chunks_per_s: float
    max_concurrent_requests: int
    failure_rate: float | None
    failures_by_kind: Mapping[str, int]
    stopped_early: int
    first_chunk_empty: int
    token_count_sources: Mapping[str, int]
    output_tokens_estimated: bool
    ttft: LatencyStats
    tpot: LatencyStats
    itl: LatencyStats
    e2el: LatencyStats
    ttfc: LatencyStats
    mean_tps: float | None
    mean_decode_rate: float | None
    schedule_to_finish: LatencyStats | None = None  # load levels only
    ttfo: LatencyStats | None = None  # reasoning models only, with the four below
    reasoning_requests: int | None = None
    total_reasoning_tokens: int | None = None
    total_answer_tokens: int | None = None
    answer_throughput: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    # vLLM's flat names for the four latencies it reports.
    @property
    def mean_ttft_ms(self) -> float | None:
        return self.ttft.mean_ms

    @property
    def median_ttft_ms(self) -> float | None:
        return self.ttft.median_ms

    @property
    def mean_tpot_ms(self) -> float | None:
        return self.tpot.mean_ms

    @property
    def median_tpot_ms(self) -> float | None:
        return self.tpot.median_ms

    @property
    def mean_itl_ms(self) -> float | None:
        return self.itl.mean_ms

    @property
    def mean_e2el_ms(self) -> float | None:
        return self.e2el.mean_ms

    def to_dict(self) -> dict[str, Any]:
        """The result JSON (vLLM's keys), as stored: a new dict each call, safe to change."""
        out: dict[str, Any] = {}
        for key in _SCALARS:
            attr = {"total_input_tokens": "total_input", "total_output_tokens": "total_output"}.get(key, key)
            value = getattr(self, attr)
            out[key] = dict(value) if isinstance(value, Mapping) else value
        for name in _LATENCIES:
            stats = getattr(self, name)
            if stats is not None:
                out.update(stats.to_dict(name))
            if name == "ttfo" and self.reasoning_requests is not None:
                for key in _REASONING:
                    out[key] = getattr(self, key)
        out["mean_tps"] = self.mean_tps
        out["mean_decode_rate"] = self.mean_decode_rate
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchmarkMetrics":
        """A stored result (to_dict's keys; KeyError when one of vLLM's is missing)."""
        known = set(_SCALARS) | set(_REASONING) | {"mean_tps", "mean_decode_rate"}
        stats = {name: LatencyStats.from_dict(d, name) for name in _LATENCIES}
        for name, st in stats.items():
            if st is not None:
                known.update(st.to_dict(name))
        kwargs: dict[str, Any] = {
            {"total_input_tokens": "total_input", "total_output_tokens": "total_output"}.get(k, k): d[k]
            for k in _SCALARS
        }
        kwargs.update({name: st for name, st in stats.items() if st is not None})
        kwargs.update({k: d.get(k) for k in (*_REASONING, "mean_tps", "mean_decode_rate")})
        kwargs["extra"] = {k: v for k, v in d.items() if k not in known}
        return cls(**kwargs)


def summarise(
    metrics: Sequence[RequestMetrics],
    duration_s: float,
    percentiles: Iterable[float] = DEFAULT_PERCENTILES,
    slo_ms: dict[str, float] | None = None,
) -> BenchmarkMetrics:
    """A level's figures as `vllm bench serve` computes them (vllm.benchmarks.serve.calculate_metrics),
    the same numbers wherever vLLM's are defined (see the module docstring for where they differ on
    purpose), plus failure_rate, failures_by_kind, stopped_early, first_chunk_empty, token_count_sources,
    output_tokens_estimated, the TTFC statistics and, for load levels, the schedule-to-finish statistics.
    duration_s: the benchmark duration (first send to last arrival); 0 makes every rate NaN.
    slo_ms: {"ttft"|"tpot"|"e2el": limit ms} for request_goodput (None when not given)."""
    percentiles = tuple(percentiles)
    ok = [m for m in metrics if m.success]
    ttfts = [m.ttft_s for m in ok]
    e2els = [m.e2el_s for m in ok]
    tpots = [m.tpot_s for m in ok if m.tpot_s is not None]
    all_tpots = [m.tpot_s or 0.0 for m in ok]  # vLLM: TPOT of a 1-token request counts as 0 for goodput
    itls = ok[0].itl_s if len(ok) == 1 else [x for m in ok for x in m.itl_s]  # one request: its own tuple
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
    sources: dict[str, int] = {}
    for m in ok:
        key = m.token_count_source or "unknown"
        sources[key] = sources.get(key, 0) + 1
    tpot = LatencyStats.of(tpots, percentiles)
    s2f = [m.schedule_to_finish_s for m in ok if m.schedule_to_finish_s is not None]
    reasoning = [m for m in ok if m.reasoning_tokens is not None]
    extras: dict[str, Any] = {}
    if reasoning:
        # Reasoning models: TTFO over the requests that reached their answer, and the token split.
        answer = int(sum(m.answer_tokens or 0 for m in reasoning)
                     + sum(m.output_tokens for m in ok if m.reasoning_tokens is None))
        extras = {
            "ttfo": LatencyStats.of([m.ttfo_s for m in reasoning if m.ttfo_s is not None], percentiles),
            "reasoning_requests": len(reasoning),
            "total_reasoning_tokens": int(sum(m.reasoning_tokens or 0 for m in reasoning)),
            "total_answer_tokens": answer,
            "answer_throughput": answer / dur,
        }
    tps_values = [m.tps for m in ok if m.tps is not None]
    return BenchmarkMetrics(
        duration=float(duration_s),
        completed=len(ok),
        failed=len(metrics) - len(ok),
        total_input=int(total_input),
        total_output=int(total_output),
        request_throughput=len(ok) / dur,
        request_goodput=good / dur if slo_ms else None,
        output_throughput=total_output / dur,
        total_token_throughput=(total_input + total_output) / dur,
        max_output_tokens_per_s=peak_tps,
        max_output_chunks_per_s=peak_chunks,
        max_concurrent_requests=peak_concurrency,
        # Failures: the share of requests that failed, and how (HTTP status, error in the stream, ...).
        failure_rate=len(failed) / len(metrics) if metrics else None,
        failures_by_kind=failure_counts(failed),
        # Requests that enforced a length and got fewer tokens ("asked N, got M").
        stopped_early=sum(1 for m in ok if m.stopped_early),
        first_chunk_empty=sum(1 for m in ok if m.first_chunk_empty),
        token_count_sources=sources,
        output_tokens_estimated=any(is_estimated(m.token_count_source) for m in ok),
        ttft=LatencyStats.of(ttfts, percentiles),  # type: ignore[arg-type]  # ok requests: ttft set
        tpot=tpot,
        itl=LatencyStats.of(itls, percentiles),
        e2el=LatencyStats.of(e2els, percentiles),  # type: ignore[arg-type]  # ok requests: e2el set
        ttfc=LatencyStats.of([m.ttfc_s for m in ok if m.ttfc_s is not None], percentiles),
        mean_tps=float(np.mean(tps_values)) if tps_values else None,
        mean_decode_rate=1000.0 / tpot.mean_ms if tpot.mean_ms else None,
        # load levels: what the service's user waits, the client's own queue included
        schedule_to_finish=LatencyStats.of(s2f, percentiles) if s2f else None,
        **extras,
    )


def aggregate(
    metrics: Sequence[RequestMetrics],
    duration_s: float,
    percentiles: Iterable[float] = DEFAULT_PERCENTILES,
    slo_ms: dict[str, float] | None = None,
) -> dict[str, Any]:
    """summarise(...) at the JSON and store boundary: `vllm bench serve`'s result keys (ms, tokens,
    requests/s, tokens/s) as a new dict (BenchmarkMetrics.to_dict)."""
    return summarise(metrics, duration_s, percentiles, slo_ms).to_dict()


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
    """vLLM's max_output_tokens_per_s / max_concurrent_requests. Output is bucketed per whole second
    from the first send (vLLM 0.32 and HEAD alike); the concurrency is the exact overlap count
    (peak_concurrency, vLLM HEAD). Returns (peak tokens/s — each chunk's token count, peak chunks/s —
    vLLM's own figure, which counts every chunk as one token, peak concurrent requests)."""
    if not ok:
        return 0.0, 0.0, 0
    t0 = min(m.start_s for m in ok)
    t_end = max(m.start_s + (m.e2el_s or 0) for m in ok)
    buckets = int(np.ceil(t_end - t0)) + 1
    tokens = np.zeros(buckets)
    chunks = np.zeros(buckets)
    for m in ok:
        # _chunk_times(m) in numpy, a request's chunks at once (cumsum adds the gaps one after another as
        # _chunk_times does: the same floats); each chunk's bucket is int(time - t0), kept in range.
        times = np.cumsum(np.concatenate(([m.start_s + (m.ttft_s or 0)], np.asarray(m.itl_s, dtype=float))))
        n = len(times)
        counts = m.chunk_tokens if len(m.chunk_tokens) == n else _even_counts(m.output_tokens, n)
        b = np.trunc(times - t0)
        keep = (b >= 0) & (b < buckets)
        idx = b[keep].astype(np.int64)  # whole-number sums: exact in any order
        tokens += np.bincount(idx, weights=np.asarray(counts, dtype=float)[keep], minlength=buckets)
        chunks += np.bincount(idx, minlength=buckets)
    return float(tokens.max()), float(chunks.max()), peak_concurrency(ok)


def _chunk_times(m: RequestMetrics) -> list[tuple[float, int]]:
    """(perf_counter s, tokens) of each chunk of a request: st + TTFT, then the ITL gaps cumulated (as
    vLLM rebuilds token times from start_time, ttft and itl). Stored runs recomputed without per-chunk
    counts spread the total over the chunks."""
    t = m.start_s + (m.ttft_s or 0)
    times = [t]
    for gap in m.itl_s:
        t += gap
        times.append(t)
    counts = m.chunk_tokens if len(m.chunk_tokens) == len(times) else _even_counts(m.output_tokens, len(times))
    return list(zip(times, counts))


def _events(ok: Sequence[RequestMetrics]) -> list[tuple[float, int]]:
    """(time s, +1 start / -1 end) of every request's half-open interval [st, st + E2EL), sorted by
    time with an end before a start at the same instant (vLLM HEAD's key (time, delta))."""
    events = [(m.start_s, 1) for m in ok] + [(m.start_s + (m.e2el_s or 0.0), -1) for m in ok]
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def peak_concurrency(metrics: Sequence[RequestMetrics]) -> int:
    """The exact peak of requests in flight among the successful ones: a sweep over their [st, st +
    E2EL) intervals, an end counted before a start at the same instant (a request that ends as the next
    begins does not overlap it). vllm/benchmarks/serve.py calculate_metrics at vLLM HEAD (after 0.32,
    which bucketed by whole seconds). 0 when none succeeded."""
    current = peak = 0
    for _t, delta in _events([m for m in metrics if m.success]):
        current += delta
        peak = max(peak, current)
    return peak


STEADY_STATE_THRESHOLD = 0.95  # vllm-bench --steady-state-threshold's default


@dataclass(frozen=True)
class SteadyStateWindow:
    """The plateau steady_state() found (vllm-bench src/metrics/steady_state.rs detect_window's names):
    start_s, end_s (s from the level's first successful send), duration_s, target_concurrency (N),
    threshold (0..1) and threshold_abs (requests in flight), observed_peak, requests started in it,
    completed in it and in all; warning: vllm-bench's line when the window is short, or None."""

    start_s: float
    end_s: float
    duration_s: float
    target_concurrency: int
    threshold: float
    threshold_abs: int
    observed_peak: int
    requests_started_in_window: int
    requests_completed_in_window: int
    requests_total: int
    warning: str | None


@dataclass(frozen=True)
class SteadyState:
    """A level's figures over its plateau, typed: steady_state()'s dict (vllm-bench's names; duration s,
    throughputs req/s and tok/s, latencies ms, None over no values). `to_dict()` writes that dict, keys in
    its order (the stored shape); `from_dict()` reads a stored one back (KeyError when a key is missing)."""

    window: SteadyStateWindow
    duration: float
    request_throughput: float
    input_throughput: float
    output_throughput: float
    total_token_throughput: float
    mean_ttft_ms: float | None
    median_ttft_ms: float | None
    p99_ttft_ms: float | None
    mean_tpot_ms: float | None
    median_tpot_ms: float | None
    p90_tpot_ms: float | None
    p99_tpot_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        """steady_state()'s dict, as stored: a new dict each call."""
        out: dict[str, Any] = {"window": {f.name: getattr(self.window, f.name) for f in fields(SteadyStateWindow)}}
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "window"})
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SteadyState":
        """A stored steady state (to_dict's keys; KeyError when one is missing)."""
        window = SteadyStateWindow(**{f.name: d["window"][f.name] for f in fields(SteadyStateWindow)})
        return cls(window, **{f.name: d[f.name] for f in fields(cls) if f.name != "window"})


def steady_state(
    metrics: Sequence[RequestMetrics],
    target_concurrency: int | None,
    duration_s: float,
    *,
    threshold: float = STEADY_STATE_THRESHOLD,
    min_window_s: float | None = None,
) -> dict[str, Any] | None:
    """A level's figures over its plateau, or None when it has none. The rule of vLLM's Rust client
    vllm-bench (src/metrics/steady_state.rs detect_window and compute; src/benchmark.rs gates it):

    * only a closed-loop level has one: a fixed concurrency N (`--max-concurrency N`, `--request-rate
      inf`); a rate level or a trace has none (target_concurrency None);
    * threshold_abs = max(1, ceil(threshold * N)); over the successful requests' [st, st + E2EL)
      intervals, an end sorted before a start at the same instant, the window opens at the FIRST start
      that lifts the requests in flight from below threshold_abs to it or above, and closes at the
      LAST end that drops them below it (dips in between stay inside the window);
    * requests started in the window, st in [start, end), give TTFT, TPOT (requests with > 1 token)
      and the input tokens; requests completed in it (st + E2EL in [start, end)) give the request
      throughput; output tokens count by the time each chunk arrived in [start, end) (tokens of
      requests started before the window count when they arrive inside it; tokens after it do not);
    * no window when the requests in flight never reach threshold_abs, or when no request started and
      none completed in it; a window shorter than min_window_s (default max(10 s, 10 % of the level))
      carries a warning, as vllm-bench prints it.

    Where tokentop differs from vllm-bench (the same numbers otherwise): each chunk counts the tokens it
    carried (vllm-bench counts a chunk as one token; equal when every chunk carries one: see
    max_output_tokens_per_s), and a statistic over no values is None, not 0.

    Returns {"window": {start_s, end_s (s from the first successful send), duration_s,
    target_concurrency, threshold, threshold_abs, observed_peak, requests_started_in_window,
    requests_completed_in_window, requests_total, warning}, "duration", "request_throughput" (req/s),
    "input_throughput", "output_throughput", "total_token_throughput" (tok/s), "mean_ttft_ms",
    "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p90_tpot_ms", "p99_tpot_ms"}:
    vllm-bench's names (its percentiles_ttft_ms list as pNN_ttft_ms)."""
    if not target_concurrency or target_concurrency <= 0:
        return None
    ok = [m for m in metrics if m.success]
    if not ok:
        return None
    threshold_abs = max(1, math.ceil(threshold * target_concurrency))
    current = observed_peak = 0
    up: float | None = None
    last_down: float | None = None
    for t, delta in _events(ok):
        before = current
        current = max(0, current + delta)
        observed_peak = max(observed_peak, current)
        if delta > 0 and up is None and before < threshold_abs <= current:
            up = t
        elif delta < 0 and before >= threshold_abs > current:
            last_down = t
    if up is None:
        return None
    end = last_down if last_down is not None else max(m.start_s + (m.e2el_s or 0.0) for m in ok)
    t0 = min(m.start_s for m in ok)
    started = [m for m in ok if up <= m.start_s < end]
    completed = [m for m in ok if up <= m.start_s + (m.e2el_s or 0.0) < end]
    if not started and not completed:
        return None
    span = end - up
    dur = max(span, 1e-9)
    floor_s = min_window_s if min_window_s is not None else max(10.0, 0.1 * duration_s)
    warning = None
    if span < floor_s:
        warning = (f"steady-state window is {span:.1f}s ({100.0 * span / max(duration_s, 1e-9):.1f}% of run); "
                   "may not be representative")
    output = 0
    for m in ok:
        for tt, k in _chunk_times(m) if m.output_tokens or m.itl_s else ():
            if tt >= end:
                break
            if tt >= up:
                output += k
    input_tokens = sum(m.input_tokens or 0 for m in started)
    ttft = _stats("ttft", [m.ttft_s for m in started if m.ttft_s is not None], (99.0,))
    tpot = _stats("tpot", [m.tpot_s for m in started if m.tpot_s is not None], (90.0, 99.0))
    return {
        "window": {
            "start_s": up - t0, "end_s": end - t0, "duration_s": span,
            "target_concurrency": int(target_concurrency), "threshold": threshold, "threshold_abs": threshold_abs,
            "observed_peak": observed_peak, "requests_started_in_window": len(started),
            "requests_completed_in_window": len(completed), "requests_total": len(ok), "warning": warning,
        },
        "duration": span,
        "request_throughput": len(completed) / dur,
        "input_throughput": input_tokens / dur,
        "output_throughput": output / dur,
        "total_token_throughput": (input_tokens + output) / dur,
        **{k: ttft[k] for k in ("mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms")},
        **{k: tpot[k] for k in ("mean_tpot_ms", "median_tpot_ms", "p90_tpot_ms", "p99_tpot_ms")},
    }


def steady_state_fields(metrics: Sequence[RequestMetrics], target_concurrency: int | None,
                        duration_s: float) -> dict[str, Any]:
    """What a load level's summary holds beside its whole-run figures (engine.load.results.LevelSummary's
    fields): {"steady_state": steady_state() as a SteadyState, or None; "steady_state_note": None, or why
    there is no plateau (one line)}."""
    result = steady_state(metrics, target_concurrency, duration_s)
    note = None
    if result is None:
        if not target_concurrency:
            note = "no plateau: only a fixed-concurrency level has one (not a rate or a trace)"
        elif not any(m.success for m in metrics):
            note = "no plateau: no request succeeded"
        else:
            need = max(1, math.ceil(STEADY_STATE_THRESHOLD * target_concurrency))
            note = (f"no plateau: never {need} requests in flight "
                    f"({STEADY_STATE_THRESHOLD:.0%} of {target_concurrency}; peak {peak_concurrency(metrics)})")
    return {"steady_state": SteadyState.from_dict(result) if result is not None else None, "steady_state_note": note}


class SteadyStateFigures(Protocol):
    """What steady_state_lines reads of a level's typed figures (engine.load.results.LevelSummary): the
    level's duration (s), steady_state() (or None) and the note saying why there is none."""

    @property
    def duration(self) -> float: ...

    @property
    def steady_state(self) -> SteadyState | None: ...

    @property
    def steady_state_note(self) -> str | None: ...


def steady_state_lines(res: SteadyStateFigures | Mapping[str, Any]) -> list[str]:
    """A level's steady state in at most two lines of under 80 columns, for `tokentop load`, `show` and
    the Load screen. res: a level's figures (engine.load.results.LevelSummary), or a stored summary as it
    is (`show` and the run details read runs of every kind and age). [] when the summary predates steady
    state (a LevelSummary with neither steady_state nor its note; a dict without the key)."""
    if isinstance(res, Mapping):
        if "steady_state" not in res:
            return []
        ss, note, whole_s = res.get("steady_state"), res.get("steady_state_note"), res.get("duration")
        if isinstance(ss, Mapping):  # as stored
            ss = SteadyState.from_dict(ss)
    else:
        ss, note, whole_s = res.steady_state, res.steady_state_note, res.duration
        if ss is None and note is None:
            return []
    if not isinstance(ss, SteadyState):
        return [str(note or "no plateau")]

    def f(value: Any, fmt: str) -> str:
        return fmt.format(value) if isinstance(value, (int, float)) and math.isfinite(value) else "-"

    w = ss.window
    first = (f"steady {f(ss.duration, '{:.1f}')} of {f(whole_s, '{:.1f}')} s, >= {w.threshold_abs} in flight: "
             f"{f(ss.request_throughput, '{:.2f}')} req/s, {f(ss.output_throughput, '{:.1f}')} tok/s")
    second = (f"  TTFT mean/med/p99 {f(ss.mean_ttft_ms, '{:.0f}')}/{f(ss.median_ttft_ms, '{:.0f}')}/"
              f"{f(ss.p99_ttft_ms, '{:.0f}')} ms, TPOT {f(ss.mean_tpot_ms, '{:.1f}')}/"
              f"{f(ss.median_tpot_ms, '{:.1f}')}/{f(ss.p99_tpot_ms, '{:.1f}')} ms")
    lines = [first, second]
    if w.warning:
        lines.append(f"  ! {w.warning}")
    return lines


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


def failure_note(agg: BenchmarkMetrics) -> str | None:
    """A level's (or run's) failures in one line, or None when nothing failed:
    "5 of 10 failed (50 %): HTTP 503 ×3, HTTP 429 ×1, error in stream ×1"."""
    failed = int(agg.failed or 0)
    if not failed:
        return None
    total = failed + int(agg.completed or 0)
    text = f"{failed} of {total} failed ({100.0 * failed / total:.0f} %)"
    if agg.failures_by_kind:
        text += ": " + ", ".join(f"{kind} ×{n}" for kind, n in agg.failures_by_kind.items())
    return text
