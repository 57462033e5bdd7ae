"""Server telemetry: what vLLM itself says while it serves.

* A vLLM server: its Prometheus `/metrics` text, parsed with prometheus_client's own parser and
  scraped on a thread (2 Hz by default).
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

DEFAULT_INTERVAL_S = 0.5


@dataclass
class ServerSample:
    t_s: float  # time.perf_counter() when taken
    source: str  # "metrics" (a server's /metrics) | "stat_logger" (in-process)
    running: float | None = None
    waiting: float | None = None
    kv_cache_usage: float | None = None  # 0..1
    prefix_cache_queries: float | None = None  # tokens, cumulative
    prefix_cache_hits: float | None = None  # tokens, cumulative
    preemptions: float | None = None  # cumulative
    ttft_count: float | None = None  # cumulative
    ttft_sum_s: float | None = None  # cumulative
    ttft_buckets: dict[str, float] = field(default_factory=dict)  # upper bound ("le") -> cumulative count
    generation_tokens: float | None = None  # cumulative

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
}
_COUNTERS = {
    "vllm:prefix_cache_queries": "prefix_cache_queries",
    "vllm:prefix_cache_hits": "prefix_cache_hits",
    "vllm:num_preemptions": "preemptions",
    "vllm:generation_tokens": "generation_tokens",
}
_TTFT = "vllm:time_to_first_token_seconds"


def parse_vllm_metrics(text: str, t_s: float | None = None) -> ServerSample:
    """A vLLM /metrics page → ServerSample (fields vLLM did not expose stay None)."""
    from prometheus_client.parser import text_string_to_metric_families

    sample = ServerSample(t_s=time.perf_counter() if t_s is None else t_s, source="metrics")
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    buckets: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:  # matched by sample name: parsers name counter families differently
            sname = s.name
            if sname in _GAUGES:
                key = _GAUGES[sname]
            elif sname.endswith("_total") and sname[: -len("_total")] in _COUNTERS:
                key = _COUNTERS[sname[: -len("_total")]]
            elif sname == _TTFT + "_bucket":
                le = s.labels.get("le", "+Inf")
                buckets[le] = buckets.get(le, 0.0) + float(s.value)
                continue
            elif sname in (_TTFT + "_count", _TTFT + "_sum"):
                key = "ttft_count" if sname.endswith("_count") else "ttft_sum_s"
            else:
                continue
            sums[key] = sums.get(key, 0.0) + float(s.value)
            counts[key] = counts.get(key, 0) + 1
    for key, value in sums.items():
        if key == "kv_cache_usage":
            value = value / counts.get(key, 1)
        setattr(sample, key, value)
    sample.ttft_buckets = dict(sorted(buckets.items(), key=lambda kv: _le(kv[0])))
    return sample


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


def diff_samples(first: ServerSample, last: ServerSample) -> dict[str, Any]:
    """A run's share of the cumulative counters, plus the peaks of the gauges are computed by the caller."""
    out: dict[str, Any] = {}
    for key in ("prefix_cache_queries", "prefix_cache_hits", "preemptions", "ttft_count", "ttft_sum_s",
                "generation_tokens"):
        a, b = getattr(first, key), getattr(last, key)
        out[key] = (b - a) if a is not None and b is not None else None
    if first.ttft_buckets and last.ttft_buckets:
        delta = {k: last.ttft_buckets.get(k, 0.0) - first.ttft_buckets.get(k, 0.0) for k in last.ttft_buckets}
        out["ttft_buckets"] = delta
        p50, p99 = histogram_quantile(0.5, delta), histogram_quantile(0.99, delta)
        out["server_p50_ttft_ms"] = p50 * 1000 if p50 is not None else None
        out["server_p99_ttft_ms"] = p99 * 1000 if p99 is not None else None
    if out.get("ttft_count"):
        out["server_mean_ttft_ms"] = out["ttft_sum_s"] / out["ttft_count"] * 1000
    if out.get("prefix_cache_queries"):
        out["prefix_hit_rate"] = (out.get("prefix_cache_hits") or 0.0) / out["prefix_cache_queries"]
    return out


def summarise_server(samples: list[ServerSample]) -> dict[str, Any]:
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
                self.note = f"server metrics unavailable: {type(exc).__name__}: {exc}".splitlines()[0][:200]
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
            raise RuntimeError(f"{self.url} has no vLLM metrics (not a vLLM server?)")
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
            bounds = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
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
                       on_sample: Callable[[ServerSample], None] | None = None) -> tuple[_PollingSampler | None, str | None]:
    """The right sampler for an engine: stat loggers in-process, /metrics for a server. (None, why) if neither."""
    stats = getattr(engine, "engine_stats", None)
    if isinstance(stats, InProcessStats):
        return StatLoggerSampler(stats, interval_s, on_sample), None
    base_url = getattr(engine, "base_url", None)
    if base_url:
        return MetricsScraper(base_url, interval_s, on_sample=on_sample), None
    return None, "this engine exposes no server metrics"
