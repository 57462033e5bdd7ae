"""The server's own timing of a request, beside the client's (issue 21, item 2).

vLLM 0.32 started with `--enable-per-request-metrics` (stats logging on, the default) puts a `metrics`
object on the final stream event — the one with `"choices": []` that carries `usage`, sent only when
the request asked `stream_options.include_usage` (tokentop always does) — for the chat and the
completions API alike:

    {"id": ..., "choices": [], "usage": {...},
     "metrics": {"time_to_first_token_ms": 41.2, "generation_time_ms": 830.5, "queue_time_ms": 0.3,
                 "mean_itl_ms": 26.8, "tokens_per_second": 36.7,
                 "speculative_decoding": {"mean_acceptance_length": 2.4, "draft_acceptance_rate": 0.47,
                                          "acceptance_histogram": [...], "num_spec_steps": 12,
                                          "num_accepted_draft_tokens": 17, "num_draft_tokens": 36,
                                          "num_spec_tokens": 3}}}

Source: vllm/entrypoints/generate/base/serving.py `build_per_request_timing_metrics` (from the engine's
`RequestStateStats`: engine-core monotonic timestamps queued_ts, scheduled_ts, first_token_ts,
last_token_ts) and `build_spec_decoding_metrics`; vllm/entrypoints/generate/base/protocol.py
`PerRequestMetrics`, `SpeculativeDecodingMetrics` (the latter only with
`--per-request-spec-decode-metrics summary|detailed`); vllm/v1/metrics/stats.py
`RequestSpecDecodeMetrics.to_dict`. Fields a server leaves out (`exclude_none`) are absent.

What each figure is (vLLM's definitions):
  * time_to_first_token_ms: scheduled -> first output token, inside the engine (vLLM's `prefill_time`
    in its Prometheus histograms): it does NOT include the queue;
  * queue_time_ms: queued in the engine core -> first scheduled (vLLM's `queued_time`);
  * generation_time_ms: first -> last output token (decode only);
  * mean_itl_ms: generation_time_ms / (output tokens - 1);
  * tokens_per_second: output tokens / (scheduled -> last token).

So the client's TTFT splits as queue + engine (the server's TTFT, from scheduling) + the rest (client
TTFT - queue - engine: the HTTP exchange, the server's tokenising and detokenising, its API process and
the client itself). The in-process engine gets the same figures from `RequestOutput.metrics`
(from_engine_stats).

The object is outside input: only finite, non-negative numbers (not booleans, not strings) are kept, a
rate only in [0, 1], a mean accepted length only >= 1, counts only whole; anything else is ignored
field by field, and an object with nothing usable is no timing at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from engine.types import RequestRecord

TIMING_FIELDS = ("time_to_first_token_ms", "queue_time_ms", "generation_time_ms", "mean_itl_ms",
                 "tokens_per_second")


@dataclass(frozen=True)
class ServerTiming:
    """One request's timing as the server measured it (ms, tokens/s; vLLM's field names), None where the
    server gave no usable value. `source`: "server" (the stream's `metrics` object) or "engine"
    (the in-process engine's RequestOutput.metrics)."""

    time_to_first_token_ms: float | None = None  # scheduled -> first token (excludes the queue)
    queue_time_ms: float | None = None
    generation_time_ms: float | None = None
    mean_itl_ms: float | None = None
    tokens_per_second: float | None = None
    # Speculative decoding (vLLM's SpeculativeDecodingMetrics), None without speculation.
    mean_acceptance_length: float | None = None  # accepted draft tokens per verify step + 1 (the bonus)
    draft_acceptance_rate: float | None = None  # accepted / drafted, 0..1
    num_accepted_draft_tokens: int | None = None
    num_draft_tokens: int | None = None
    num_spec_steps: int | None = None
    source: str = "server"

    @property
    def has_timing(self) -> bool:
        return any(getattr(self, name) is not None for name in TIMING_FIELDS)

    @property
    def has_spec(self) -> bool:
        return self.draft_acceptance_rate is not None or self.mean_acceptance_length is not None


def _number(value: Any, *, low: float = 0.0, high: float = math.inf) -> float | None:
    """A finite JSON number within [low, high], else None (booleans and numeric strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value) or value < low or value > high:
        return None
    return value


def _count(value: Any) -> int | None:
    number = _number(value)
    if number is None or number != int(number):
        return None
    return int(number)


def parse_server_metrics(obj: Any) -> ServerTiming | None:
    """The final stream event's `metrics` object (see the module's docstring) as a ServerTiming, or None
    when it is absent or holds nothing usable. Never raises: a field of the wrong type, NaN, Infinity,
    a negative time, a rate outside [0, 1] or a nested object where a number belongs is skipped."""
    if not isinstance(obj, dict):
        return None
    values: dict[str, Any] = {name: _number(obj.get(name)) for name in TIMING_FIELDS}
    spec = obj.get("speculative_decoding")
    if isinstance(spec, dict):
        values.update(
            mean_acceptance_length=_number(spec.get("mean_acceptance_length"), low=1.0),
            draft_acceptance_rate=_number(spec.get("draft_acceptance_rate"), high=1.0),
            num_accepted_draft_tokens=_count(spec.get("num_accepted_draft_tokens")),
            num_draft_tokens=_count(spec.get("num_draft_tokens")),
            num_spec_steps=_count(spec.get("num_spec_steps")),
        )
    if all(v is None for v in values.values()):
        return None
    return ServerTiming(**values)


def from_engine_stats(stats: Any, num_generation_tokens: int, spec: Any = None) -> ServerTiming | None:
    """The same figures from the in-process engine's `RequestOutput.metrics` (vLLM's RequestStateStats:
    queued_ts, scheduled_ts, first_token_ts, last_token_ts, engine-core monotonic seconds, 0 = not seen),
    computed as vLLM's build_per_request_timing_metrics does; `spec` is the final output's
    `spec_decode_metrics` (its to_dict() is SpeculativeDecodingMetrics) or None. None when the engine
    kept no stats (disable_log_stats)."""
    if stats is None:
        return None
    ts = {name: _number(getattr(stats, name, None)) or 0.0
          for name in ("queued_ts", "scheduled_ts", "first_token_ts", "last_token_ts")}
    q, s, f, last = ts["queued_ts"], ts["scheduled_ts"], ts["first_token_ts"], ts["last_token_ts"]
    obj: dict[str, Any] = {}
    if s > 0 and f > 0:
        obj["time_to_first_token_ms"] = (f - s) * 1000
    if f > 0 and last > 0:
        obj["generation_time_ms"] = (last - f) * 1000
    if q > 0 and s > 0:
        obj["queue_time_ms"] = (s - q) * 1000
    if f > 0 and last > 0 and num_generation_tokens > 1:
        obj["mean_itl_ms"] = (last - f) / (num_generation_tokens - 1) * 1000
    if s > 0 and last > s:
        obj["tokens_per_second"] = num_generation_tokens / (last - s)
    if spec is not None:
        try:
            obj["speculative_decoding"] = spec.to_dict()
        except Exception:  # a vLLM without to_dict(): no acceptance figures
            pass
    timing = parse_server_metrics(obj)
    return None if timing is None else ServerTiming(**{**_as_dict(timing), "source": "engine"})


def _as_dict(timing: ServerTiming) -> dict[str, Any]:
    return {f.name: getattr(timing, f.name) for f in fields(timing)}


def level_split(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """A level's client TTFT split by the server's own timing, over its successful requests that carry
    both the server's queue time and TTFT (ms): mean and median of the client's TTFT over those
    requests (`*_ttft_client_ms`), of the queue (`*_server_queue_time_ms`), of the engine's TTFT from
    scheduling (`*_server_ttft_ms`) and of the rest (`*_ttft_rest_ms` = client TTFT - queue - engine,
    per request: transport, tokenising, the API process, the client). The means add up; the medians need
    not. `server_timed_requests` counts them, `server_timing_source` says where they came from. Also the
    server's mean ITL and tokens/s, and speculative decoding's acceptance over the level (draft
    acceptance rate = sum accepted / sum drafted; mean acceptance length = 1 + sum accepted / sum
    verify steps, as vLLM's spec-decode logger counts them; the mean of the requests' own figures when
    a request lacks the counts). {} when no request carries server timing."""
    out: dict[str, Any] = {}
    ok = [r for r in records if r.success and r.chunk_ns and getattr(r, "server_timing", None) is not None]
    timed = [r for r in ok if r.server_timing.queue_time_ms is not None
             and r.server_timing.time_to_first_token_ms is not None]
    if timed:
        client = np.array([(r.chunk_ns[0] - r.st_ns) / 1e6 for r in timed])
        queue = np.array([r.server_timing.queue_time_ms for r in timed])
        engine = np.array([r.server_timing.time_to_first_token_ms for r in timed])
        parts = {"ttft_client_ms": client, "server_queue_time_ms": queue, "server_ttft_ms": engine,
                 "ttft_rest_ms": client - queue - engine}
        for name, arr in parts.items():
            out[f"mean_{name}"] = float(arr.mean())
            out[f"median_{name}"] = float(np.median(arr))
        out["server_timed_requests"] = len(timed)
        out["server_timing_source"] = timed[0].server_timing.source
    for name, key in (("mean_itl_ms", "mean_server_itl_ms"), ("tokens_per_second", "mean_server_tokens_per_second")):
        values = [getattr(r.server_timing, name) for r in ok if getattr(r.server_timing, name) is not None]
        if values:
            out[key] = float(np.mean(values))
    spec = [r.server_timing for r in ok if r.server_timing.has_spec]
    if spec:
        out["spec_decode_requests"] = len(spec)
        counted = [t for t in spec if None not in (t.num_accepted_draft_tokens, t.num_draft_tokens, t.num_spec_steps)]
        if len(counted) == len(spec):  # a request that drafted nothing has zero counts: it adds nothing
            accepted = sum(t.num_accepted_draft_tokens for t in counted)
            drafted = sum(t.num_draft_tokens for t in counted)
            steps = sum(t.num_spec_steps for t in counted)
            if drafted:
                out["spec_decode_acceptance_rate"] = accepted / drafted
            if steps:
                out["spec_decode_acceptance_length"] = 1.0 + accepted / steps
        else:
            rates = [t.draft_acceptance_rate for t in spec if t.draft_acceptance_rate is not None]
            lengths = [t.mean_acceptance_length for t in spec if t.mean_acceptance_length is not None]
            if rates:
                out["spec_decode_acceptance_rate"] = float(np.mean(rates))
            if lengths:
                out["spec_decode_acceptance_length"] = float(np.mean(lengths))
    return out


def _ms(value: float) -> str:
    return f"{value:.1f}" if abs(value) < 10 else f"{value:.0f}"


class SplitFigures(Protocol):
    """What split_lines reads of a level's typed figures (engine.load.results.LevelSummary): its label,
    server_timing (level_split's keys) and output_throughput (tok/s)."""

    @property
    def label(self) -> str | None: ...

    @property
    def server_timing(self) -> Mapping[str, Any]: ...

    @property
    def output_throughput(self) -> float: ...


def split_lines(res: SplitFigures | Mapping[str, Any], width: int = 80, *, label: str | None = None) -> list[str]:
    """A level's TTFT split and spec-decode acceptance as text lines of at most `width` columns (the
    `load` command, `show` and the Load screen), two for the split and one for spec decode:
        concurrency 4: TTFT 56 ms = queue 3.1 + engine 41 + rest 12
          median 53 = 2.0 + 40 + 11, 10 req with server timing
        concurrency 4: spec decode acceptance 47 %, accepted length 2.40 at 310.2 tok/s
    res: a level's figures (engine.load.results.LevelSummary), or a stored summary as it is (`show` and the
    run details read runs of every kind and age: level_split's keys beside the others). label: the name the
    lines lead with (default: res's label, else "level"). [] when the level has no server timing."""
    if isinstance(res, Mapping):
        timing, tput, named = res, res.get("output_throughput"), res.get("label")
    else:
        timing, tput, named = res.server_timing, res.output_throughput, res.label
    label = label if label is not None else str(named or "level")
    lines: list[str] = []
    if timing.get("mean_ttft_client_ms") is not None:
        mean = (f"TTFT {_ms(timing['mean_ttft_client_ms'])} ms = queue {_ms(timing['mean_server_queue_time_ms'])}"
                f" + engine {_ms(timing['mean_server_ttft_ms'])} + rest {_ms(timing['mean_ttft_rest_ms'])}")
        lines.append(f"{_cut(label, width - len(mean) - 2)}: {mean}")
        lines.append(_cut(f"  median {_ms(timing['median_ttft_client_ms'])} = "
                          f"{_ms(timing['median_server_queue_time_ms'])} + {_ms(timing['median_server_ttft_ms'])}"
                          f" + {_ms(timing['median_ttft_rest_ms'])}, "
                          f"{timing.get('server_timed_requests')} req with server timing", width))
    rate, length = timing.get("spec_decode_acceptance_rate"), timing.get("spec_decode_acceptance_length")
    if rate is not None or length is not None:
        parts = []
        if rate is not None:
            parts.append(f"acceptance {100 * rate:.0f} %")
        if length is not None:
            parts.append(f"accepted length {length:.2f}")
        text = f"{label}: spec decode " + ", ".join(parts)
        if tput is not None:
            text += f" at {tput:.1f} tok/s"
        lines.append(_cut(text, width))
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


SPLIT_NOTE = ("TTFT split by the server's own timing (vLLM --enable-per-request-metrics), mean ms: "
              "queue = waiting to be scheduled, engine = scheduled to first token, rest = client TTFT "
              "- both (HTTP, tokenising, the API process, the client)")
