"""Server telemetry: what vLLM itself says while it serves.

* A vLLM (or SGLang) server: its Prometheus `/metrics` text, parsed with prometheus_client's own parser
  and scraped on a thread (2 Hz by default). Prefix-cache counters are read under every name vLLM and
  SGLang have used (PREFIX_COUNTER_NAMES), the local cache and the external (KV connector) tier apart.
* The in-process engine: the same figures from vLLM's stat-logger interface (`StatLoggerBase`),
  collected by `InProcessStats` (installed by VllmEngine) and sampled on the same schedule.

Both produce `ServerSample`s with the same fields. Gauges (running, waiting, KV-cache usage) are the
value at sampling time; counters (prefix-cache queries/hits, preemptions, the TTFT histogram) are
cumulative since the server started — differences between two samples give a run's share.
Several label sets (engines, models) are summed; KV-cache usage is their mean.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from engine.terminal_text import one_line

DEFAULT_INTERVAL_S = 0.5


@dataclass
class ServerSample:
    t_s: float  # time.perf_counter() when taken
    source: str  # "metrics" (a server's /metrics) | "stat_logger" (in-process)
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1
    prefix_cache_queries: float | None = None  # tokens (blocks in the earliest V1), cumulative: the local cache
    prefix_cache_hits: float | None = None  # tokens, cumulative: the local cache
    preemptions: float | None = None  # cumulative
    ttft_count: float | None = None  # cumulative
    ttft_sum_s: float | None = None  # cumulative
    ttft_buckets: dict[str, float] = field(default_factory=dict)  # upper bound ("le") -> cumulative count
    generation_tokens: float | None = None  # cumulative
    # The external tier (a KV connector: LMCache, CPU offload, another instance; SGLang's HiCache host and
    # storage): tokens the local cache missed that were looked up there, and those it held. Cumulative.
    external_prefix_cache_queries: float | None = None
    external_prefix_cache_hits: float | None = None
    # Which names the prefix-cache counters were read from (PREFIX_COUNTER_NAMES' keys), None: none found.
    prefix_counters: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def prefix_hit_rate(self) -> float | None:
        if not self.prefix_cache_queries:
            return None
        return (self.prefix_cache_hits or 0.0) / self.prefix_cache_queries


_GAUGES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:gpu_cache_usage_perc": "kv_cache_usage",  # older vLLM
    # SGLang (python/sglang/srt/observability/metrics_collector.py, SchedulerMetricsCollector)
    "sglang:num_running_reqs": "running",
    "sglang:num_queue_reqs": "waiting",
    "sglang:token_usage": "kv_cache_usage",
}
_COUNTERS = {
    "vllm:num_preemptions": "preemptions",
    "vllm:generation_tokens": "generation_tokens",
}

# Prefix-cache counters by the names each server release used, matched without the `_total` suffix that
# prometheus_client adds to a counter (pages written by hand or by other exporters may lack it). Where a
# page carries more than one set (vLLM 0.9.2-0.11 keep the old names beside the new with
# --show-hidden-metrics-for-version), the first set listed wins: never both, which would count twice.
#   vllm        vllm/v1/metrics/loggers.py (0.9.2 and later; 0.32 here): vllm:prefix_cache_{queries,hits},
#               tokens, local cache; vllm:external_prefix_cache_{queries,hits}, the KV connector's tier
#               (queries = the tokens the local cache missed, scheduler.py)
#   vllm-gpu    the same file in early V1 (to 0.9.1): vllm:gpu_prefix_cache_{queries,hits} (blocks in the
#               earliest, tokens later: the rate means the same), deprecated in 0.9.2, hidden in 0.11
#   sglang      SGLang's metrics_collector.py: sglang:prompt_tokens_total and
#               sglang:cached_tokens_total{cache_source=device|host|storage|...}; device hits are the local
#               cache, any other source the external tier (queried for what the device missed). A release
#               without the cache_source label counts every cached token as local.
# Not read: vLLM V0's vllm:gpu_prefix_cache_hit_rate and SGLang's sglang:cache_hit_rate are gauges of a
# rate over the server's lifetime or its most recent batches, not a level's share.
PREFIX_COUNTER_NAMES = {
    "vllm": {"vllm:prefix_cache_queries": "q", "vllm:prefix_cache_hits": "h",
             "vllm:external_prefix_cache_queries": "xq", "vllm:external_prefix_cache_hits": "xh"},
    "vllm-gpu": {"vllm:gpu_prefix_cache_queries": "q", "vllm:gpu_prefix_cache_hits": "h"},
    "sglang": {"sglang:prompt_tokens": "q", "sglang:cached_tokens": "h"},
}
_PREFIX_BY_NAME = {name: (family, part) for family, names in PREFIX_COUNTER_NAMES.items()
                   for name, part in names.items()}
_SGLANG_LOCAL_SOURCES = ("device", "")  # cache_source label values of SGLang's local (device) cache
_TTFT = "vllm:time_to_first_token_seconds"
_SGLANG_TTFT = "sglang:time_to_first_token_seconds"


def _counter_name(name: str) -> str:
    return name[: -len("_total")] if name.endswith("_total") else name


def parse_vllm_metrics(text: str, t_s: float | None = None) -> ServerSample:
    """A vLLM (or SGLang) Prometheus /metrics page → ServerSample; fields the server did not expose stay None.

    Several label sets (engines, models) are summed; KV-cache usage is their mean. Prefix-cache counters
    are read under every name in PREFIX_COUNTER_NAMES (one set per page, the newest present), the local
    cache and the external tier apart. ValueError where the text is not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    sample = ServerSample(t_s=time.perf_counter() if t_s is None else t_s, source="metrics")
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    buckets: dict[str, float] = {}
    prefix: dict[str, dict[str, float]] = {}  # family -> part -> sum
    ttft_family: str | None = None
    for family in text_string_to_metric_families(text):
        for s in family.samples:  # matched by sample name: parsers name counter families differently
            sname = s.name
            value = float(s.value)
            if math.isnan(value):
                continue
            base = _counter_name(sname)
            if base in _PREFIX_BY_NAME and not sname.endswith(("_created", "_bucket", "_sum", "_count")):
                fam, part = _PREFIX_BY_NAME[base]
                if fam == "sglang" and part == "h":
                    src = s.labels.get("cache_source", "")
                    part = "h" if src in _SGLANG_LOCAL_SOURCES else "xh"
                parts = prefix.setdefault(fam, {})
                parts[part] = parts.get(part, 0.0) + value
                continue
            if sname in _GAUGES:
                key = _GAUGES[sname]
            elif sname.endswith("_total") and base in _COUNTERS:
                key = _COUNTERS[base]
            elif sname == "sglang:generation_tokens_total":
                key = "generation_tokens"
            elif sname in (_TTFT + "_bucket", _SGLANG_TTFT + "_bucket"):
                fam = sname[: -len("_bucket")]
                if ttft_family not in (None, fam):
                    continue
                ttft_family = fam
                le = s.labels.get("le", "+Inf")
                buckets[le] = buckets.get(le, 0.0) + value
                continue
            elif sname in (_TTFT + "_count", _TTFT + "_sum", _SGLANG_TTFT + "_count", _SGLANG_TTFT + "_sum"):
                fam = sname.rsplit("_", 1)[0]
                if ttft_family not in (None, fam):
                    continue
                ttft_family = fam
                key = "ttft_count" if sname.endswith("_count") else "ttft_sum_s"
            else:
                continue
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    for key, value in sums.items():
        if key == "kv_cache_usage":
            value = value / counts.get(key, 1)
        setattr(sample, key, value)
    sample.ttft_buckets = dict(sorted(buckets.items(), key=lambda kv: _le(kv[0])))
    _set_prefix(sample, prefix)
    return sample


def _set_prefix(sample: ServerSample, prefix: dict[str, dict[str, float]]) -> None:
    """The first family of PREFIX_COUNTER_NAMES with a queries counter on the page sets the sample's
    local and external prefix-cache counters."""
    for fam in PREFIX_COUNTER_NAMES:
        parts = prefix.get(fam)
        if not parts or "q" not in parts:
            continue
        if fam == "sglang" and "h" not in parts and "xh" not in parts:
            continue  # prompt tokens without a cached-tokens counter: no hit count, not a 0 % rate
        sample.prefix_counters = fam
        sample.prefix_cache_queries = parts["q"]
        sample.prefix_cache_hits = parts.get("h", 0.0)
        if fam == "sglang":
            if "xh" in parts:  # what the device missed was looked up in the host/storage tiers
                sample.external_prefix_cache_hits = parts["xh"]
                sample.external_prefix_cache_queries = max(0.0, parts["q"] - sample.prefix_cache_hits)
        elif "xq" in parts:
            sample.external_prefix_cache_queries = parts["xq"]
            sample.external_prefix_cache_hits = parts.get("xh", 0.0)
        return


def _le(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf


def histogram_quantile(q: float, buckets: dict[str, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets (linear within a bucket), in seconds."""
    items = sorted(((_le(k), v) for k, v in buckets.items()), key=lambda kv: kv[0])
    if not items or items[-1][1] <= 0:
        return None
    total = items[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in items:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


_PREFIX_KEYS = ("prefix_cache_queries", "prefix_cache_hits", "external_prefix_cache_queries",
                "external_prefix_cache_hits")


def diff_samples(first: ServerSample, last: ServerSample) -> dict[str, Any]:
    """A run's share of the cumulative counters (the peaks of the gauges are computed by the caller).

    Prefix-cache rates, each None where its counters are absent or did not move:
    prefix_hit_rate = local hits / local queries (vLLM's "Prefix cache hit rate");
    external_prefix_hit_rate = external hits / external queries (vLLM's "External prefix cache hit
    rate": of the tokens the local cache missed, the share the connector's tier held);
    prefix_hit_rate_all_tiers = (local + external hits) / local queries (prompt tokens not computed).
    A counter that went down (the server restarted) gives None, not a negative share."""
    out: dict[str, Any] = {}
    same_names = first.prefix_counters == last.prefix_counters
    for key in ("preemptions", "ttft_count", "ttft_sum_s", "generation_tokens") + _PREFIX_KEYS:
        a, b = getattr(first, key), getattr(last, key)
        if a is None and b is not None and first.source == last.source == "stat_logger":
            a = 0.0  # in-process counts start at 0 and appear with vLLM's first connector stats
        ok = a is not None and b is not None and b >= a and (same_names or key not in _PREFIX_KEYS)
        out[key] = (b - a) if ok else None
    if first.ttft_buckets and last.ttft_buckets:
        delta = {k: last.ttft_buckets.get(k, 0.0) - first.ttft_buckets.get(k, 0.0) for k in last.ttft_buckets}
        out["ttft_buckets"] = delta
        p50, p99 = histogram_quantile(0.5, delta), histogram_quantile(0.99, delta)
        out["server_p50_ttft_ms"] = p50 * 1000 if p50 is not None else None
        out["server_p99_ttft_ms"] = p99 * 1000 if p99 is not None else None
    if out.get("ttft_count"):
        out["server_mean_ttft_ms"] = out["ttft_sum_s"] / out["ttft_count"] * 1000
    out["prefix_counters"] = last.prefix_counters
    queries, ext_queries = out.get("prefix_cache_queries"), out.get("external_prefix_cache_queries")
    if queries:
        out["prefix_hit_rate"] = (out.get("prefix_cache_hits") or 0.0) / queries
        out["prefix_hit_rate_all_tiers"] = min(
            1.0, ((out.get("prefix_cache_hits") or 0.0) + (out.get("external_prefix_cache_hits") or 0.0)) / queries)
    if ext_queries:
        out["external_prefix_hit_rate"] = (out.get("external_prefix_cache_hits") or 0.0) / ext_queries
    return out


def summarise_server(samples: list[ServerSample]) -> dict[str, Any]:
    """The level's share of the counters (diff_samples of its first and last sample), the gauges' max
    and mean, and `prefix_cache_note` where the server exports no prefix-cache counter tokentop knows."""
    if not samples:
        return {}
    out = diff_samples(samples[0], samples[-1]) if len(samples) > 1 else {}
    out["samples"] = len(samples)
    out["source"] = samples[-1].source
    for key in ("running", "waiting", "kv_cache_usage"):
        values = [getattr(s, key) for s in samples if getattr(s, key) is not None]
        out[f"max_{key}"] = max(values) if values else None
        out[f"mean_{key}"] = sum(values) / len(values) if values else None
    out.pop("ttft_buckets", None)
    if samples[-1].source == "metrics" and samples[-1].prefix_counters is None:
        out["prefix_cache_note"] = ("the server's /metrics has no prefix-cache counters (vllm:prefix_cache_*, "
                                    "vllm:gpu_prefix_cache_*, sglang:cached_tokens): no server hit rate")
    return out


# -- samplers -----------------------------------------------------------------------------


class _PollingSampler:
    """A thread that calls `read()` every interval and keeps the samples."""

    source = "?"

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, on_sample: Callable[[ServerSample], None] | None = None):
        self.interval_s = interval_s
        self.on_sample = on_sample
        self.samples: list[ServerSample] = []
        self.note: str | None = None
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> ServerSample | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def sample_once(self) -> ServerSample | None:
        try:
            sample = self.read()
        except Exception as exc:
            self.errors += 1
            if self.note is None:
                self.note = f"server metrics unavailable: {one_line(exc, typed=True)}"[:200]
            return None
        if sample is None:
            return None
        with self._lock:
            self.samples.append(sample)
        if self.on_sample is not None:
            try:
                self.on_sample(sample)
            except Exception:
                pass
        return sample

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            self.sample_once()
            self._stop.wait(max(0.0, self.interval_s - (time.perf_counter() - t)))

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"tokentop-{self.source}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None
        self.sample_once()  # a last sample, so counters cover the whole run
        self.close()

    def close(self) -> None:
        pass

    def snapshot(self, since: float | None = None, until: float | None = None) -> list[ServerSample]:
        with self._lock:
            return [s for s in self.samples
                    if (since is None or s.t_s >= since) and (until is None or s.t_s <= until)]

    def latest(self) -> ServerSample | None:
        with self._lock:
            return self.samples[-1] if self.samples else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class MetricsScraper(_PollingSampler):
    """Scrapes `<base_url>/metrics` of a vLLM server."""

    source = "metrics"

    def __init__(self, base_url: str, interval_s: float = DEFAULT_INTERVAL_S, timeout_s: float = 2.0,
                 on_sample: Callable[[ServerSample], None] | None = None):
        super().__init__(interval_s, on_sample)
        import httpx

        root = base_url.rstrip("/")
        if root.endswith("/v1"):
            root = root[:-3]
        self.url = root + "/metrics"
        self._client = httpx.Client(timeout=timeout_s)

    def read(self) -> ServerSample:
        resp = self._client.get(self.url)
        if resp.status_code != 200:
            raise RuntimeError(f"GET {self.url} answered {resp.status_code}")
        sample = parse_vllm_metrics(resp.text)
        if sample.running is None and sample.kv_cache_usage is None:
            raise RuntimeError(f"{self.url} has no vLLM or SGLang metrics (not such a server?)")
        return sample

    def close(self) -> None:
        self._client.close()


class InProcessStats:
    """Cumulative and latest figures from vLLM's stat loggers, for the in-process engine.

    `factory()` gives a per-engine StatLoggerFactory for AsyncLLM(stat_loggers=[...]). vLLM calls
    the logger's record() on the engine's event loop; it only updates numbers under a lock.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.running = 0.0
        self.waiting = 0.0
        self.kv_cache_usage = 0.0
        self.prefix_cache_queries = 0.0
        self.prefix_cache_hits = 0.0
        # The KV connector's tier (SchedulerStats.connector_prefix_cache_stats): None until vLLM reports one
        self.external_prefix_cache_queries: float | None = None
        self.external_prefix_cache_hits: float | None = None
        self.preemptions = 0.0
        self.generation_tokens = 0.0
        self.ttft_count = 0.0
        self.ttft_sum_s = 0.0
        self.bounds: list[float] = []
        self.bucket_counts: list[float] = []
        self.records = 0

    def factory(self) -> Callable[..., Any]:
        from vllm.v1.metrics.loggers import StatLoggerBase

        try:
            from vllm.v1.metrics.buckets import TIME_TO_FIRST_TOKEN_BUCKETS as bounds
        except ImportError:  # older vLLM
            bounds = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]  # type: ignore[assignment]  # a list
        with self._lock:
            self.bounds = [float(b) for b in bounds]
            self.bucket_counts = [0.0] * (len(self.bounds) + 1)  # last: +Inf
        stats = self

        class TokentopStatLogger(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0):
                self.engine_index = engine_index

            def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0):
                stats.record(scheduler_stats, iteration_stats)

            def log_engine_initialized(self) -> None:
                pass

            def log(self) -> None:
                pass

        return TokentopStatLogger

    def record(self, scheduler_stats: Any, iteration_stats: Any) -> None:
        with self._lock:
            self.records += 1
            if scheduler_stats is not None:
                self.running = float(getattr(scheduler_stats, "num_running_reqs", 0) or 0)
                self.waiting = float(getattr(scheduler_stats, "num_waiting_reqs", 0) or 0)
                self.kv_cache_usage = float(getattr(scheduler_stats, "kv_cache_usage", 0.0) or 0.0)
                pcs = getattr(scheduler_stats, "prefix_cache_stats", None)
                if pcs is not None:
                    self.prefix_cache_queries += float(getattr(pcs, "queries", 0) or 0)
                    self.prefix_cache_hits += float(getattr(pcs, "hits", 0) or 0)
                # vLLM 0.11+: the connector's own PrefixCacheStats, None without a KV connector; counted
                # as vLLM's PrometheusStatLogger counts vllm:external_prefix_cache_{queries,hits}
                xpcs = getattr(scheduler_stats, "connector_prefix_cache_stats", None)
                if xpcs is not None:
                    self.external_prefix_cache_queries = ((self.external_prefix_cache_queries or 0.0)
                                                          + float(getattr(xpcs, "queries", 0) or 0))
                    self.external_prefix_cache_hits = ((self.external_prefix_cache_hits or 0.0)
                                                       + float(getattr(xpcs, "hits", 0) or 0))
            if iteration_stats is not None:
                self.preemptions += float(getattr(iteration_stats, "num_preempted_reqs", 0) or 0)
                self.generation_tokens += float(getattr(iteration_stats, "num_generation_tokens", 0) or 0)
                for ttft in getattr(iteration_stats, "time_to_first_tokens_iter", None) or []:
                    self.ttft_count += 1
                    self.ttft_sum_s += float(ttft)
                    if self.bucket_counts:
                        i = next((k for k, b in enumerate(self.bounds) if ttft <= b), len(self.bounds))
                        self.bucket_counts[i] += 1

    def sample(self, t_s: float | None = None) -> ServerSample:
        with self._lock:
            cumulative, buckets = 0.0, {}
            for bound, count in zip(self.bounds + [math.inf], self.bucket_counts):
                cumulative += count
                buckets["+Inf" if math.isinf(bound) else repr(bound)] = cumulative
            return ServerSample(
                t_s=time.perf_counter() if t_s is None else t_s,
                source="stat_logger",
                running=self.running,
                waiting=self.waiting,
                kv_cache_usage=self.kv_cache_usage,
                prefix_cache_queries=self.prefix_cache_queries,
                prefix_cache_hits=self.prefix_cache_hits,
                preemptions=self.preemptions,
                ttft_count=self.ttft_count,
                ttft_sum_s=self.ttft_sum_s,
                ttft_buckets=buckets,
                generation_tokens=self.generation_tokens,
                external_prefix_cache_queries=self.external_prefix_cache_queries,
                external_prefix_cache_hits=self.external_prefix_cache_hits,
                prefix_counters="vllm",
            )


class StatLoggerSampler(_PollingSampler):
    """Samples an in-process engine's InProcessStats on the same schedule as the scraper."""

    source = "stat_logger"

    def __init__(self, stats: InProcessStats, interval_s: float = DEFAULT_INTERVAL_S,
                 on_sample: Callable[[ServerSample], None] | None = None):
        super().__init__(interval_s, on_sample)
        self.stats = stats

    def read(self) -> ServerSample:
        return self.stats.sample()


def sampler_for_engine(engine: Any, interval_s: float = DEFAULT_INTERVAL_S,
                       on_sample: Callable[[ServerSample], None] | None = None
                       ) -> tuple[_PollingSampler | None, str | None]:
    """The right sampler for an engine: stat loggers in-process, /metrics for a server. (None, why) if neither."""
    stats = getattr(engine, "engine_stats", None)
    if isinstance(stats, InProcessStats):
        return StatLoggerSampler(stats, interval_s, on_sample), None
    base_url = getattr(engine, "base_url", None)
    if base_url:
        return MetricsScraper(base_url, interval_s, on_sample=on_sample), None
    return None, "this engine exposes no server metrics"
