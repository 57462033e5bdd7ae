"""A level's figures: vLLM's aggregates over its requests (engine.measure.metrics), goodput under
SLOs as vLLM's --goodput counts it, and what tokentop adds (warm-ups, schedule lag, prompt lengths,
prefix-cache hits, the server's own timing, TTFT per turn), as one engine.load.results.LevelSummary.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from engine.load.patterns import LoadLevel
from engine.load.results import LevelSummary
from engine.measure.metrics import RequestMetrics, steady_state_fields, summarise
from engine.measure.server_timing import level_split
from engine.types import BadRequestError, RequestRecord
from engine.workloads.base import Workload
from engine.workloads.conversations import ttft_by_turn


def parse_slo(text: str | None) -> dict[str, float]:
    """'ttft=500,tpot=50' -> {'ttft': 500.0, 'tpot': 50.0} (milliseconds), like vLLM's --goodput."""
    if not text:
        return {}
    out: dict[str, float] = {}
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        if "=" not in part and ":" not in part:
            raise BadRequestError(f"--slo {part!r} must be NAME=MS, e.g. ttft=500,tpot=50")
        key, value = part.replace(":", "=").split("=", 1)
        key = key.strip().lower()
        if key not in ("ttft", "tpot", "e2el"):
            raise BadRequestError(f"--slo {key!r} is not one of ttft, tpot, e2el")
        try:
            ms = float(value)
        except ValueError:
            raise BadRequestError(f"--slo {key}={value!r}: the limit must be a number of milliseconds") from None
        if not ms > 0 or math.isinf(ms):
            raise BadRequestError(f"--slo {key}={value}: the limit must be above 0 ms")
        out[key] = ms
    return out


def goodput_count(metrics: Sequence[RequestMetrics], slo_ms: dict[str, float]) -> int:
    """Requests that succeeded and met every SLO (vLLM: a 1-token request's TPOT counts as 0)."""
    good = 0
    for m in metrics:
        if not m.success:
            continue
        values = {"ttft": m.ttft_s, "tpot": m.tpot_s or 0.0, "e2el": m.e2el_s}
        if all(values[k] is not None and values[k] * 1000.0 <= limit for k, limit in slo_ms.items()):  # type: ignore[operator]  # None ruled out first
            good += 1
    return good


def summarise_level(
    level: LoadLevel,
    metrics: Sequence[RequestMetrics],
    duration_s: float,
    slo_ms: dict[str, float] | None,
    percentiles: Sequence[float] = (50.0, 90.0, 99.0),
) -> LevelSummary:
    """A level's figures (engine.load.results.LevelSummary): vLLM's (engine.measure.metrics.summarise over
    `metrics`, duration_s the level's duration in s, `percentiles` of each latency), the plateau's
    (steady_state_fields), goodput under `slo_ms` ({"ttft"|"tpot"|"e2el": ms}, as vLLM's --goodput), the
    level and its label. What the level's records add (level_extras) is put in by the runner."""
    good: dict[str, Any] = {}
    if slo_ms:
        n = goodput_count(metrics, slo_ms)
        good = {"good_requests": n, "good_fraction": n / len(metrics) if metrics else 0.0, "slo_ms": dict(slo_ms)}
    return LevelSummary.of(
        summarise(metrics, duration_s, tuple(percentiles), slo_ms or None),
        **steady_state_fields(metrics, level.concurrency, duration_s),  # the plateau's figures
        **good, level=level, label=level.label)


def level_extras(records: Sequence[RequestRecord], warmup: dict[str, Any], workload: Workload | None) -> dict[str, Any]:
    """What a level adds to vLLM's figures: the workload's label, warm-ups and the prefix-cache reset,
    the schedule lag (actual send - scheduled send, ms: a trace's fixed schedule, or the pattern's), prompt
    lengths against their targets, prefix-cache hits per request, and TTFT per turn of conversations.
    Returns LevelSummary's field names -> values (`dataclasses.replace(summary, **extras)`); the server's
    own timing under "server_timing" (engine.measure.server_timing.level_split, {} without it)."""
    out: dict[str, Any] = {}
    if workload is not None:
        out["workload"] = workload.label()
    out.update({k: v for k, v in (warmup or {}).items()})
    lags = [(r.st_ns - r.scheduled_ns) / 1e6 for r in records if r.scheduled_ns is not None and r.st_ns]
    if lags:
        arr = np.asarray(lags)
        out.update(mean_schedule_lag_ms=float(arr.mean()), p99_schedule_lag_ms=float(np.percentile(arr, 99)),
                   max_schedule_lag_ms=float(arr.max()))
    ok = [r for r in records if r.success]
    checked = [r for r in ok if r.request.input_len is not None and r.input_tokens is not None
               and r.prompt_form != "chat"]
    if checked:
        diffs = [r.input_tokens - r.request.input_len for r in checked]  # type: ignore[operator]  # `checked` has both
        out["total_target_input_tokens"] = int(sum(r.request.input_len for r in checked))  # type: ignore[misc]
        out["input_len_checked"] = len(checked)
        out["input_len_mismatches"] = sum(1 for d in diffs if d)
        out["max_input_len_error"] = int(max(diffs, key=abs))
    cached = [r for r in ok if r.cached_tokens is not None and r.input_tokens]
    if cached:
        out["total_cached_tokens"] = int(sum(r.cached_tokens for r in cached))  # type: ignore[misc]  # `cached` has them
        out["request_prefix_hit_rate"] = out["total_cached_tokens"] / max(1, sum(r.input_tokens for r in cached))  # type: ignore[misc]
    out["server_timing"] = level_split(records)  # the server's own timing: TTFT as queue + engine + rest, spec decode
    turns = ttft_by_turn(records)
    if turns:
        out["ttft_by_turn"] = turns
        out["conversations"] = len({r.request.conversation_id for r in records})
    return out
