"""What a load level hands back, typed: `LevelSummary`, a level's figures (vllm/benchmarks/serve.py's
BenchmarkMetrics with what a load level adds), a frozen dataclass inside engine/ and a dict only at the
JSON and store boundary (`to_dict()` writes the stored shape, key for key and in the same order as
before it was typed; `from_dict()` reads a stored one back).

In engine.load's layers below `driver | summary` (they both use it) and above `patterns` (LoadLevel).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.load.patterns import LoadLevel
from engine.measure.metrics import BenchmarkMetrics, SteadyState

# What a level adds to vLLM's figures (summary.level_extras), in the order the stored summary lists them:
# the workload's label, warm-ups, the prefix-cache reset, schedule lag, prompt lengths against their targets
# and prefix-cache hits per request; then the server's timing (SERVER_TIMING_KEYS), TTFT per turn, and what a
# stop left (aborted, not_sent).
_DETAILS = (
    "workload", "num_warmups", "warmups_failed", "prefix_cache_reset", "prefix_cache_reset_note",
    "mean_schedule_lag_ms", "p99_schedule_lag_ms", "max_schedule_lag_ms",
    "total_target_input_tokens", "input_len_checked", "input_len_mismatches", "max_input_len_error",
    "total_cached_tokens", "request_prefix_hit_rate",
)
_TURNS = ("ttft_by_turn", "conversations")
_STOP = ("aborted", "not_sent")
_LEVEL = tuple(f.name for f in dataclasses.fields(LoadLevel))
# engine.measure.server_timing.level_split's keys: the client's TTFT split by the server's own timing, the
# server's ITL and tokens/s, speculative decoding's acceptance.
SERVER_TIMING_KEYS = (
    *(f"{stat}_{name}" for name in ("ttft_client_ms", "server_queue_time_ms", "server_ttft_ms", "ttft_rest_ms")
      for stat in ("mean", "median")),
    "server_timed_requests", "server_timing_source", "mean_server_itl_ms", "mean_server_tokens_per_second",
    "spec_decode_requests", "spec_decode_acceptance_rate", "spec_decode_acceptance_length",
)


@dataclass(frozen=True)
class LevelSummary(BenchmarkMetrics):
    """A load level's figures: every field of BenchmarkMetrics (vLLM's names: completed, failed, total_input,
    total_output, request_throughput, output_throughput, total_token_throughput, mean_ttft_ms, ttft.std_ms,
    ttft.percentiles_ms, …; ms, tokens, req/s, tok/s), then what a level adds. A figure the level did not
    produce is None (and absent from `to_dict()`, as it was from the stored dict).

    steady_state: engine.measure.metrics.SteadyState (steady_state()'s figures), or None with
    steady_state_note saying why (both None: a summary stored before steady state). good_requests,
    good_fraction (0..1), slo_ms ({"ttft"|"tpot"|"e2el": ms}): only under SLOs (vLLM's --goodput). level: the
    LoadLevel it ran (stored as its to_json() keys), label its name. workload … request_prefix_hit_rate:
    summary.level_extras's (label, warm-ups, cache reset, schedule lag ms, prompt tokens against their
    targets, cached prompt tokens and their share, 0..1). server_timing:
    engine.measure.server_timing.level_split's figures (ms; {} without the server's timing). ttft_by_turn
    ({turn: {"n", "p50_ms", …}}), conversations: multi-turn workloads. aborted: requests a stop cut short (not
    in `failed`); not_sent: requests the stop kept from going out.
    extra (BenchmarkMetrics'): keys added after the level (J/token, the server's prefix-cache hit rates)
    or unknown to this version, written back last."""

    steady_state: SteadyState | None = None
    steady_state_note: str | None = None
    good_requests: int | None = None
    good_fraction: float | None = None
    slo_ms: Mapping[str, float] | None = None
    level: LoadLevel | None = None
    label: str | None = None
    workload: str | None = None
    num_warmups: int | None = None
    warmups_failed: int | None = None
    prefix_cache_reset: bool | None = None
    prefix_cache_reset_note: str | None = None
    mean_schedule_lag_ms: float | None = None
    p99_schedule_lag_ms: float | None = None
    max_schedule_lag_ms: float | None = None
    total_target_input_tokens: int | None = None
    input_len_checked: int | None = None
    input_len_mismatches: int | None = None
    max_input_len_error: int | None = None
    total_cached_tokens: int | None = None
    request_prefix_hit_rate: float | None = None
    server_timing: Mapping[str, Any] = field(default_factory=dict)
    ttft_by_turn: Mapping[str, Mapping[str, Any]] | None = None
    conversations: int | None = None
    aborted: int | None = None
    not_sent: int | None = None

    @property
    def p50_ttft_ms(self) -> float | None:
        return _percentile(self, "ttft", 50.0)

    @property
    def p99_ttft_ms(self) -> float | None:
        return _percentile(self, "ttft", 99.0)

    @classmethod
    def of(cls, figures: BenchmarkMetrics, **level_fields: Any) -> "LevelSummary":
        """vLLM's figures (engine.measure.metrics.summarise) with a level's own fields (TypeError for a name
        that is not one)."""
        base = {f.name: getattr(figures, f.name) for f in dataclasses.fields(BenchmarkMetrics)}
        return cls(**base, **level_fields)

    def to_dict(self) -> dict[str, Any]:
        """The stored shape: vLLM's keys (BenchmarkMetrics.to_dict), steady state, goodput, the level's
        settings and label, its details, then `extra`; a new dict each call."""
        out = BenchmarkMetrics.to_dict(dataclasses.replace(self, extra={}))
        if self.steady_state is not None or self.steady_state_note is not None:
            out["steady_state"] = self.steady_state.to_dict() if self.steady_state is not None else None
            out["steady_state_note"] = self.steady_state_note
        if self.slo_ms is not None:
            out["good_requests"] = self.good_requests
            out["good_fraction"] = self.good_fraction
            out["slo_ms"] = dict(self.slo_ms)
        if self.level is not None:
            out.update(self.level.to_json())
        if self.label is not None:
            out["label"] = self.label
        for key in _DETAILS:
            value = getattr(self, key)
            if value is not None or (key == "prefix_cache_reset_note" and self.prefix_cache_reset is not None):
                out[key] = value
        out.update(self.server_timing)
        for key in (*_TURNS, *_STOP):
            value = getattr(self, key)
            if value is not None:
                out[key] = _plain(value)
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LevelSummary":
        """A level's stored summary (to_dict's keys, or a run's "overall" with the keys added beside it,
        kept in `extra`); KeyError when one of vLLM's keys is missing (BenchmarkMetrics.from_dict)."""
        base = BenchmarkMetrics.from_dict(d)
        rest = dict(base.extra)
        own: dict[str, Any] = {}
        for key in ("steady_state", "steady_state_note", "good_requests", "good_fraction", "slo_ms", "label",
                    *_DETAILS, *_TURNS, *_STOP):
            if key in rest:
                own[key] = rest.pop(key)
        if isinstance(own.get("steady_state"), Mapping):
            own["steady_state"] = SteadyState.from_dict(own["steady_state"])
        if all(key in rest for key in ("request_rate", "num_prompts")):
            values = {key: rest.pop(key) for key in _LEVEL if key in rest}
            if values["request_rate"] == "inf":
                values["request_rate"] = math.inf
            own["level"] = LoadLevel(**values)
        own["server_timing"] = {key: value for key, value in rest.items() if key in SERVER_TIMING_KEYS}
        for key in own["server_timing"]:
            del rest[key]
        return cls.of(dataclasses.replace(base, extra=rest), **own)


def _percentile(summary: BenchmarkMetrics, name: str, p: float) -> float | None:
    stats = getattr(summary, name)
    return next((value for q, value in stats.percentiles_ms if q == p), None) if stats is not None else None


def _plain(value: Any) -> Any:
    """A mapping (nested too) as plain dicts: what the JSON holds."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value
