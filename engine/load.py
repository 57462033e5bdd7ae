"""Load patterns, driven on the engine's own event loop, timed exactly like `vllm bench serve`.

Patterns (vLLM's option names):
  * fixed concurrency N: every request is released at once (`--request-rate inf`) and a semaphore
    lets at most N be in flight (`--max-concurrency N`) — N users, each sending the next request as
    soon as its previous one finished;
  * request rate R with Poisson (burstiness 1) or gamma (burstiness B) inter-arrival times,
    optionally capped by --max-concurrency. Delays are drawn as vLLM's `get_request` draws them
    (gamma(shape=B, scale=1/(R*B)), cumulated, then rescaled so the last arrival is at N/R);
  * a sweep over concurrency levels: explicit levels run in full; the automatic sweep doubles
    1, 2, 4, ... and stops when a level's output throughput is less than SWEEP_MIN_GAIN (10 %)
    above the best level so far ("throughput stopped rising"), when a level's p99 TTFT is above the
    TTFT SLO, when a level has failed requests, or at the maximum level.

What a level sends comes from a workload (engine/workloads): synthetic token prompts, a dataset, a
timed trace (its requests carry their own send times: a fixed schedule, `LoadLevel.self_timed`) or
multi-turn conversations (a conversation's next turn is handed back by the workload when a reply has
come in, and sent after its think time). The workload is a source of requests; this runner is the
only driver.

Before every level: `--num-warmups` copies of its first request are sent and not measured (as
`vllm bench serve` does), then the engine's prefix cache is reset (in-process: AsyncLLM's
reset_prefix_cache(); a vLLM server: POST /reset_prefix_cache, which only answers in its dev mode), so
a repeated level does not read the previous level's cache as speed. Whether it could be reset is
stored with the level.

`st` is taken by Engine.generate just before a request is handed to the engine — after the
semaphore, as in vLLM's bench — so a request's stored send time is when it really went out.
Finished records are handed to the caller's thread through a deque it empties every DRAIN_S: nothing
is written to disk on the engine loop, so storing never delays another request's timestamps.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import itertools
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from engine.measure.client_health import assess, cpu_sample, cpu_use
from engine.engines.host import EngineHost
from engine.measure.metrics import RequestMetrics, aggregate, request_metrics, steady_state_fields
from engine.measure.server_timing import level_split
from engine.types import BadRequestError, GenerationRequest, RequestRecord
from engine.workloads.base import LevelSource, Workload
from engine.workloads.conversations import ttft_by_turn
from engine.workloads.synthetic import RandomWorkload, SuiteWorkload
from engine.workloads.tokens import Tokens

SWEEP_MIN_GAIN = 0.10  # a level must beat the best so far by 10 % to count as "throughput still rising"
SWEEP_MAX_LEVEL = 256
DRAIN_S = 0.05  # how often the driver thread collects finished records (and sees a stop)
DEFAULT_TEMPERATURE = 0.8


@dataclass(frozen=True)
class LoadLevel:
    """One load level: what `vllm bench serve` calls request_rate / burstiness / max_concurrency."""

    request_rate: float = math.inf  # requests/s; inf = all at once
    burstiness: float = 1.0  # 1 = Poisson; <1 burstier; >1 more regular (gamma)
    max_concurrency: int | None = None
    num_prompts: int = 10
    self_timed: bool = False  # a trace: every request has its own send time (rate/burstiness unused)

    @property
    def label(self) -> str:
        if self.self_timed:
            return "trace" + (f" max-concurrency {self.max_concurrency}" if self.max_concurrency else "")
        if math.isinf(self.request_rate):
            return f"concurrency {self.max_concurrency}" if self.max_concurrency else "all at once"
        text = f"rate {self.request_rate:g}/s"
        if self.burstiness != 1.0:
            text += f" burstiness {self.burstiness:g}"
        if self.max_concurrency:
            text += f" max-concurrency {self.max_concurrency}"
        return text

    @property
    def concurrency(self) -> int | None:
        """The level's x-axis value in a concurrency sweep."""
        return self.max_concurrency if math.isinf(self.request_rate) and not self.self_timed else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["request_rate"] = "inf" if math.isinf(self.request_rate) else self.request_rate
        if not self.self_timed:
            data.pop("self_timed")  # the stored shape of levels before traces
        return data


def PromptSource(input_len: int | None = None, output_len: int | None = None,
                 suite_requests: Sequence[GenerationRequest] = (), suite_name: str | None = None,
                 temperature: float = DEFAULT_TEMPERATURE, seed: int = 0) -> Workload:
    """Synthetic random-token prompts of `input_len` tokens (vLLM's random dataset), or a suite's prompts
    cycled: the workloads `tokentop load` had before datasets (engine.workloads.synthetic)."""
    if suite_requests:
        return SuiteWorkload(tuple(suite_requests), suite_name or "suite", output_len=output_len, seed=seed)
    return RandomWorkload(input_len or 128, output_len or 128, temperature=temperature, seed=seed)


def arrival_offsets(n: int, request_rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Cumulative send offsets (s) as vLLM's get_request computes them (constant rate, no ramp-up)."""
    if burstiness <= 0:
        raise BadRequestError(f"burstiness must be above 0 (got {burstiness})")
    if request_rate <= 0:
        raise BadRequestError(f"request rate must be above 0 (got {request_rate})")
    if n <= 0:
        return []
    if math.isinf(request_rate):
        return [0.0] * n
    if math.isinf(burstiness):
        delays = np.full(n, 1.0 / request_rate)
    else:
        theta = 1.0 / (request_rate * burstiness)
        delays = np.random.RandomState(seed).gamma(shape=burstiness, scale=theta, size=n)
    cum = np.cumsum(delays)
    if cum[-1] != 0:
        cum = cum * ((n / request_rate) / cum[-1])  # vLLM rescales so all are sent in n/rate seconds
    return [float(x) for x in cum]


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
        if all(values[k] is not None and values[k] * 1000.0 <= limit for k, limit in slo_ms.items()):
            good += 1
    return good


@dataclass
class LiveLoad:
    """Counters the UI polls on a timer (written on the engine loop, read anywhere)."""

    level: str = ""
    level_index: int = 0
    levels_total: int = 0
    sent: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0  # the server or the connection failed them
    stopped: int = 0  # cut short by a stop (in flight when it came); requests never sent count nowhere
    output_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    recent_ttft_ms: list[float] = field(default_factory=list)

    def reset(self, label: str, index: int) -> None:
        self.level, self.level_index = label, index
        self.sent = self.in_flight = self.completed = self.failed = self.stopped = self.output_tokens = 0
        self.started = time.perf_counter()
        self.recent_ttft_ms = []

    def snapshot(self) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        ttfts = list(self.recent_ttft_ms)
        return {
            "level": self.level,
            "level_index": self.level_index,
            "levels_total": self.levels_total,
            "sent": self.sent,
            "in_flight": self.in_flight,
            "completed": self.completed,
            "failed": self.failed,
            "stopped": self.stopped,
            "elapsed_s": elapsed,
            "output_throughput": self.output_tokens / elapsed,
            "ttft_p50_ms": float(np.percentile(ttfts, 50)) if ttfts else None,
            "ttft_p99_ms": float(np.percentile(ttfts, 99)) if ttfts else None,
        }


@dataclass
class LevelOutcome:
    level: LoadLevel
    status: str  # completed | failed | aborted
    records: list[RequestRecord] = field(default_factory=list)  # in send (plan) order
    metrics: list[RequestMetrics] = field(default_factory=list)
    duration_s: float = 0.0
    start_ns: int = 0  # perf_counter_ns when the level began (send offsets are relative to it)
    # The level's first scheduled send (a rate pattern's first arrival is not at 0): its duration counts from here.
    first_send_ns: int = 0
    result: dict[str, Any] = field(default_factory=dict)  # vLLM-named aggregates + goodput
    error: str | None = None
    client_health: dict[str, Any] = field(default_factory=dict)  # engine.measure.client_health.assess
    planned: int = 0  # requests the level meant to send (every conversation's every turn)
    warmup: dict[str, Any] = field(default_factory=dict)  # warm-ups sent and failed, the cache reset
    client_cpu: list[dict[str, Any]] = field(default_factory=list)  # per client process: client_health.cpu_use
    end_ns: int = 0  # perf_counter_ns when the last request ended
    client_processes: int = 1  # processes that drove the level (engine.client_pool)
    # Client processes: their event loops' lags (s; None: this process's EngineHost probe has them), what
    # went wrong with one (a process that died: one line each), and this (the parent) process's CPU use
    # in cores while they drove the level (it stores and computes; None with one process).
    loop_lags_s: list[float] | None = None
    client_errors: list[str] = field(default_factory=list)
    parent_process_cores: float | None = None

    @property
    def end_s(self) -> float:
        """perf_counter seconds when the level ended."""
        return (self.first_send_ns or self.start_ns) / 1e9 + self.duration_s

    def send_offsets_s(self) -> list[float]:
        return sorted((r.st_ns - self.start_ns) / 1e9 for r in self.records if r.st_ns)


RecordSink = Callable[[int, RequestRecord, RequestMetrics], None]


def summarise_level(
    level: LoadLevel,
    metrics: Sequence[RequestMetrics],
    duration_s: float,
    slo_ms: dict[str, float] | None,
    percentiles: Sequence[float] = (50.0, 90.0, 99.0),
) -> dict[str, Any]:
    result: dict[str, Any] = dict(aggregate(metrics, duration_s, tuple(percentiles), slo_ms or None))
    result.update(steady_state_fields(metrics, level.concurrency, duration_s))  # the plateau's figures
    if slo_ms:
        good = goodput_count(metrics, slo_ms)
        result["good_requests"] = good
        result["good_fraction"] = good / len(metrics) if metrics else 0.0
        result["slo_ms"] = dict(slo_ms)
    result.update(level.to_json())
    result["label"] = level.label
    return result


class LoadRunner:
    """Runs load levels on an EngineHost. Synchronous: call from a worker thread or the main thread;
    it waits in short slices, so Ctrl-C (KeyboardInterrupt) and stop() are seen promptly.

    `prompts` is the workload (engine.workloads): prepare() it once with the engine's tokenizer before
    the first level (run_level does so when nobody did)."""

    def __init__(
        self,
        host: EngineHost,
        prompts: Workload,
        *,
        slo_ms: dict[str, float] | None = None,
        seed: int = 0,
        on_record: RecordSink | None = None,
        stop: threading.Event | None = None,
        live: LiveLoad | None = None,
        num_warmups: int = 0,
        reset_prefix_cache: bool = True,
        client_processes: int = 1,
    ):
        self.host = host
        self.workload = prompts
        self.slo_ms = dict(slo_ms or {})
        self.seed = seed
        self.on_record = on_record or (lambda *_: None)
        self.stop_event = stop or threading.Event()
        self.live = live or LiveLoad()
        self.num_warmups = int(num_warmups or 0)
        self.reset_prefix_cache = reset_prefix_cache
        self.interrupted = False
        self.client_processes = max(1, int(client_processes or 1))
        self.pool = None  # engine.client_pool.ClientPool, with client_processes > 1

    def start_clients(self) -> None:
        """Start the client processes (client_processes > 1), once: each runs its own engine that sends
        its share of every level (engine.client_pool). BadRequestError when the engine runs in this
        process only (the in-process vLLM engine); EngineError when a process cannot start."""
        if self.client_processes <= 1 or self.pool is not None:
            return
        from engine.client_pool import ClientPool

        pool = ClientPool(self.host.engine, self.client_processes)
        if pool.start(stop=self.stop_event):  # False: stopped while they started (and closed again)
            self.pool = pool

    def close(self) -> None:
        """Stop the client processes, if any (idempotent): none is left behind."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()

    @property
    def prompts(self) -> Workload:
        return self.workload

    def stop(self) -> None:
        self.stop_event.set()

    def prepare(self, max_prompts: int | None = None) -> Workload:
        """Prepare the workload with the engine's tokenizer (once; BadRequestError when it cannot run)."""
        self.workload.prepare(engine_tokens(self.host.engine), max_prompts)
        return self.workload

    # -- one level ----------------------------------------------------------------
    def run_level(self, level: LoadLevel, level_index: int = 0, on_begin: Callable[[int], None] | None = None,
                  on_ready: Callable[[], None] | None = None) -> LevelOutcome:
        """One level: warm-ups and the prefix-cache reset, then `on_ready()` (the caller's last sample
        before the level), then the requests on the level's pattern; `on_begin(start_ns)` when the
        level's clock starts."""
        outcome = LevelOutcome(level=level, status="completed")
        self.live.reset(level.label, level_index)
        try:
            self.prepare(level.num_prompts)
            source = self.workload.level(level.num_prompts, level_index)
            planned = source.initial()
        except BadRequestError as exc:
            outcome.status, outcome.error = "failed", str(exc)
            outcome.result = summarise_level(level, [], 0.0, self.slo_ms)
            return outcome
        outcome.planned = source.total
        if level.self_timed:
            offsets = [max(0.0, float(p.at_s or 0.0)) for p in planned]
        else:
            offsets = arrival_offsets(len(planned), level.request_rate, level.burstiness, self.seed + level_index)
        # Finished records cross to this thread through a deque (appends are atomic), collected every
        # DRAIN_S: the engine loop never wakes this thread per request (each wake-up takes the GIL
        # from the loop that timestamps tokens).
        done_q: collections.deque = collections.deque()
        cancel = threading.Event()
        by_index: dict[int, tuple[RequestRecord, RequestMetrics]] = {}

        def drain() -> None:
            while done_q:
                index, record = done_q.popleft()
                tokens_before = record.output_tokens
                self.host.engine.settle(record)  # a tokenizer's counts, here: never on the engine loop
                if record.success:
                    self.live.output_tokens += record.output_tokens - tokens_before
                m = request_metrics(record)
                by_index[index] = (record, m)
                self.on_record(index, record, m)  # stored on this thread, not the engine loop

        try:
            first = planned[0].request if planned else None
            outcome.warmup = self._wait(self.host.call(self._before_level(first, level.max_concurrency, cancel)),
                                        cancel) or {}
            if self.stop_event.is_set():
                raise _Stopped()
            if on_ready is not None:
                on_ready()
            if self.client_processes > 1:
                self.start_clients()
                if self.pool is None:
                    raise _Stopped()
                future = self.pool.start_level(level, source, planned, offsets, done_q, outcome, cancel, on_begin,
                                               self.live)
            else:
                future = self.host.call(self._drive(source, planned, offsets, level.max_concurrency, done_q, outcome,
                                                    cancel, on_begin))
            while not future.done():
                if self.stop_event.is_set() and not cancel.is_set():
                    cancel.set()
                    outcome.status = "aborted"
                drain()
                concurrent.futures.wait([future], timeout=DRAIN_S)
            future.result()
        except _Stopped:
            outcome.status = "aborted"
        except KeyboardInterrupt:
            self.interrupted = True
            outcome.status = "aborted"
            cancel.set()
            try:
                future.result(timeout=10)
            except Exception:
                pass
        except Exception as exc:
            outcome.status = "failed"
            outcome.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        drain()
        order = sorted(by_index)
        outcome.records = [by_index[i][0] for i in order]
        outcome.metrics = [by_index[i][1] for i in order]
        ok = sum(1 for m in outcome.metrics if m.success)
        if outcome.status == "completed" and ok == 0:
            outcome.status = "failed"
            outcome.error = next((r.error for r in outcome.records if r.error), "no request ran")
        outcome.result = summarise_level(level, outcome.metrics, outcome.duration_s, self.slo_ms)
        outcome.result.update(level_extras(outcome.records, outcome.warmup, self.workload))
        # A stop cuts the requests in flight short: they are kept (what streamed) as "aborted", but they
        # did not fail — failed means the server or the connection failed. Requests the stop kept from
        # being sent are in no count (and not stored): "not_sent" says how many the plan had left.
        stopped = sum(1 for r in outcome.records if r.aborted and not r.success)
        result = outcome.result
        result["aborted"] = stopped
        result["failed"] = failed = max(0, int(result.get("failed") or 0) - stopped)
        result["not_sent"] = max(0, outcome.planned - len(outcome.records))
        if stopped:
            kinds = dict(result.get("failures_by_kind") or {})
            kinds.pop("aborted", None)
            result["failures_by_kind"] = kinds
            ended = int(result.get("completed") or 0) + failed
            result["failure_rate"] = failed / ended if ended else None
        begin_s = outcome.start_ns / 1e9 if outcome.start_ns else time.perf_counter() - outcome.duration_s
        lags = outcome.loop_lags_s
        if lags is None:
            lags = self.host.loop_lag.window(begin_s, outcome.end_s if outcome.start_ns else begin_s + outcome.duration_s)
        outcome.client_health = assess(outcome.records, lags, outcome.client_cpu)
        outcome.client_health["client_processes"] = outcome.client_processes
        if outcome.parent_process_cores is not None:
            outcome.client_health["parent_process_cores"] = outcome.parent_process_cores
        outcome.client_health["warnings"][:0] = outcome.client_errors
        return outcome

    def _wait(self, future, cancel: threading.Event):
        """A future of the engine loop, waited for in slices (stop and Ctrl-C are seen)."""
        try:
            while True:
                try:
                    return future.result(timeout=0.05)
                except TimeoutError:
                    if self.stop_event.is_set():
                        cancel.set()
                        future.cancel()  # warm-ups in flight are dropped: nothing of them is kept
                        raise _Stopped() from None
        except KeyboardInterrupt:
            self.interrupted = True
            cancel.set()
            future.cancel()
            raise _Stopped() from None

    async def _before_level(self, first: GenerationRequest | None, max_concurrency: int | None,
                            cancel: threading.Event) -> dict[str, Any]:
        """--num-warmups copies of the level's first request (sent, not measured), then the prefix-cache
        reset. Runs on the engine loop before the level's clock starts."""
        engine = self.host.engine
        out: dict[str, Any] = {"num_warmups": 0, "warmups_failed": 0}
        if self.num_warmups and first is not None:
            sem = asyncio.Semaphore(max_concurrency) if max_concurrency else None

            async def warm() -> bool:
                if cancel.is_set():
                    return True
                if sem is None:
                    return (await engine.generate(first)).success
                async with sem:
                    return (await engine.generate(first)).success

            results = await asyncio.gather(*(warm() for _ in range(self.num_warmups)), return_exceptions=True)
            out["num_warmups"] = self.num_warmups
            out["warmups_failed"] = sum(1 for r in results if r is not True)
        if self.reset_prefix_cache:
            try:
                ok, note = await engine.reset_prefix_cache()
            except Exception as exc:  # a reset that fails is said, never a failed level
                ok, note = False, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            out["prefix_cache_reset"] = bool(ok)
            out["prefix_cache_reset_note"] = note
        return out

    async def _drive(self, source: LevelSource, planned, offsets, max_concurrency, done_q, outcome: LevelOutcome,
                     cancel, on_begin) -> None:
        await drive(self.host.engine, self.live, source, planned, offsets, max_concurrency, done_q, outcome, cancel,
                    on_begin)

    # -- several levels -------------------------------------------------------------
    def run_levels(
        self,
        levels: Sequence[LoadLevel],
        *,
        auto_stop: bool = False,
        on_level_start: Callable[[int, LoadLevel], Any] | None = None,
        on_level_done: Callable[[int, LevelOutcome], Any] | None = None,
        level_runner: Callable[[int, LoadLevel], LevelOutcome] | None = None,
    ) -> tuple[list[LevelOutcome], str]:
        """Run levels in order. Returns (outcomes, why it stopped). With auto_stop, the sweep ends
        when throughput stops rising or the TTFT SLO breaks (see the module docstring)."""
        outcomes: list[LevelOutcome] = []
        self.live.levels_total = len(levels)
        reason = "all levels ran"
        best = 0.0
        for i, level in enumerate(levels):
            if self.stop_event.is_set():
                reason = "stopped"
                break
            if on_level_start:
                on_level_start(i, level)
            outcome = level_runner(i, level) if level_runner else self.run_level(level, i)
            outcomes.append(outcome)
            if on_level_done:
                on_level_done(i, outcome)
            if outcome.status != "completed" or self.interrupted:
                reason = f"level {level.label} {outcome.status}"
                break
            verdict = sweep_verdict(outcome.result, best, self.slo_ms) if auto_stop else None
            best = max(best, float(outcome.result.get("output_throughput") or 0.0))
            if verdict:
                reason = verdict
                break
        return outcomes, reason


async def drive(engine, live: LiveLoad, source: LevelSource, planned: Sequence, offsets: Sequence[float],
                max_concurrency: int | None, done_q: collections.deque, outcome: LevelOutcome, cancel: threading.Event,
                on_begin: Callable[[int], None] | None = None, *, indexes: Sequence[int] | None = None,
                next_index: Callable[[], int] | None = None, start_ns: int | None = None,
                limiter: Any = None) -> None:
    """The one driver of a level (run on the engine loop): send `planned` (engine.workloads.base.Planned)
    on `offsets` (s after the level's start) under `max_concurrency`, and every follow-up the source
    hands back; each finished record goes to `done_q` as (index, record). Requests go out in time order
    (offsets sorted, ties in plan order: the order engine.client_pool deals them in, so one process and
    N send on the same schedule). Fills the outcome's start_ns, first_send_ns, end_ns, duration_s (first
    scheduled send to the last request's end) and client_cpu (this process:
    engine.measure.client_health.cpu_use).

    A client process driving its share of a level (engine.client_pool) passes the level-wide `indexes`
    of its requests, `next_index` (the level's shared numbering of follow-ups), `start_ns`, the level's
    common start on the perf_counter clock (CLOCK_MONOTONIC, one clock for every process): each send
    waits for start_ns + its offset, and `limiter`, the level's one --max-concurrency shared by every
    process (engine.client_pool.CapGate: `await acquire()`, `release()`) in place of this process's own
    semaphore. Either way a request's wait for a slot is its `queue_wait_ns`, and `st` is taken after
    it (vLLM #54101: latencies leave the client's own queue out)."""
    sem = limiter if limiter is not None else asyncio.Semaphore(max_concurrency) if max_concurrency else None
    tasks: set[asyncio.Task] = set()
    all_done = asyncio.Event()
    # follow-ups are numbered after the first wave, as sent
    next_index = next_index or itertools.count(len(planned)).__next__

    def finished(task: asyncio.Task) -> None:
        tasks.discard(task)
        if not tasks:
            all_done.set()

    def spawn(coro) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(finished)

    async def one(index: int, request: GenerationRequest, scheduled_ns: int) -> None:
        queue_wait_ns = None
        try:
            if sem is not None:
                ready_ns = time.perf_counter_ns()
                await sem.acquire()
                try:
                    queue_wait_ns = time.perf_counter_ns() - ready_ns
                    record = await _send(engine, request, live)
                finally:
                    sem.release()
            else:
                record = await _send(engine, request, live)
        except asyncio.CancelledError:
            return  # stopped while waiting for a free slot: never sent, so neither counted nor stored
        # The client's self-check: when the pattern meant it to go, and the wait on the limit.
        record.scheduled_ns = scheduled_ns
        record.queue_wait_ns = queue_wait_ns
        if record.aborted and not record.success:
            live.stopped += 1  # cut short by the stop: not a failure of the server or the connection
        elif record.success:
            live.completed += 1
            live.output_tokens += record.output_tokens
            if record.chunk_ns:
                live.recent_ttft_ms.append((record.chunk_ns[0] - record.st_ns) / 1e6)
        else:
            live.failed += 1
        done_q.append((index, record))
        if cancel.is_set():
            return
        try:
            follow = source.follow_up(request, record)  # a conversation's next turn, with the reply
        except Exception:  # a workload's bug ends that conversation, not the level
            follow = None
        if follow is not None:
            spawn(later(follow.request, time.perf_counter_ns() + int(follow.delay_s * 1e9)))

    async def later(request: GenerationRequest, due_ns: int) -> None:
        """A follow-up after its think time; one stopped while it waits was never sent (no record)."""
        try:
            while (delay := (due_ns - time.perf_counter_ns()) / 1e9) > 0:
                if cancel.is_set():
                    return
                await asyncio.sleep(min(delay, 0.05))
        except asyncio.CancelledError:
            return
        if not cancel.is_set():
            await one(next_index(), request, due_ns)

    cpu_before = cpu_sample()  # this (the loop) thread's CPU clocks: the level's client CPU use
    start_ns = start_ns or time.perf_counter_ns()
    outcome.start_ns = start_ns
    # The level's duration counts from its first scheduled send (a rate pattern's first arrival is
    # a random interval after the start, which vLLM's bench counts into its duration).
    first_ns = outcome.first_send_ns = start_ns + int(min(offsets) * 1e9) if len(offsets) else start_ns
    if on_begin is not None:
        on_begin(start_ns)
    start = start_ns / 1e9
    order = sorted(range(min(len(planned), len(offsets))), key=lambda k: (offsets[k], k))
    try:
        for k in order:
            item, offset = planned[k], offsets[k]
            index = indexes[k] if indexes is not None else k
            if cancel.is_set():
                break
            delay = start + offset - time.perf_counter()
            while delay > 0 and not cancel.is_set():
                await asyncio.sleep(min(delay, 0.05))
                delay = start + offset - time.perf_counter()
            if cancel.is_set():
                break
            spawn(one(index, item.request, start_ns + int(offset * 1e9)))
        # Wait for the last one (woken the moment it ends, so the duration is exact), looking at
        # `cancel` every DRAIN_S: O(1) per wake-up however many requests the level has.
        while tasks:
            if cancel.is_set():
                pending = list(tasks)
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                break
            all_done.clear()
            try:
                await asyncio.wait_for(all_done.wait(), DRAIN_S)
            except TimeoutError:
                pass
    finally:
        outcome.end_ns = time.perf_counter_ns()
        outcome.duration_s = max(0, outcome.end_ns - first_ns) / 1e9
        outcome.client_cpu = [cpu_use(cpu_before, cpu_sample())]


async def _send(engine, request: GenerationRequest, live: LiveLoad) -> RequestRecord:
    live.sent += 1
    live.in_flight += 1
    try:
        return await engine.generate(request)  # st taken inside, just before sending
    finally:
        live.in_flight -= 1


class _Stopped(Exception):
    """Stopped before the level's first request went out."""


def engine_tokens(engine: Any) -> Tokens | None:
    """The engine's tokenizer for workloads (engine.workloads.tokens.Tokens), or None when it has none."""
    getter = getattr(engine, "workload_tokens", None)
    if getter is None:
        return None
    try:
        return getter()
    except BadRequestError:
        raise
    except Exception:
        return None


def level_extras(records: Sequence[RequestRecord], warmup: dict[str, Any], workload: Workload | None) -> dict[str, Any]:
    """What a level adds to vLLM's figures: the workload's label, warm-ups and the prefix-cache reset,
    the schedule lag (actual send - scheduled send, ms: a trace's fixed schedule, or the pattern's), prompt
    lengths against their targets, prefix-cache hits per request, and TTFT per turn of conversations."""
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
        diffs = [r.input_tokens - r.request.input_len for r in checked]
        out["total_target_input_tokens"] = int(sum(r.request.input_len for r in checked))
        out["input_len_checked"] = len(checked)
        out["input_len_mismatches"] = sum(1 for d in diffs if d)
        out["max_input_len_error"] = int(max(diffs, key=abs))
    cached = [r for r in ok if r.cached_tokens is not None and r.input_tokens]
    if cached:
        out["total_cached_tokens"] = int(sum(r.cached_tokens for r in cached))
        out["request_prefix_hit_rate"] = out["total_cached_tokens"] / max(1, sum(r.input_tokens for r in cached))
    out.update(level_split(records))  # the server's own timing: TTFT as queue + engine + rest, spec decode
    turns = ttft_by_turn(records)
    if turns:
        out["ttft_by_turn"] = turns
        out["conversations"] = len({r.request.conversation_id for r in records})
    return out


def sweep_verdict(result: dict[str, Any], best_so_far: float, slo_ms: dict[str, float]) -> str | None:
    """Why an automatic sweep should stop after this level, or None to go on."""
    if result.get("failed"):
        return f"{result['failed']} request(s) failed at {result.get('label')}"
    ttft_slo = slo_ms.get("ttft")
    p99 = result.get("p99_ttft_ms")
    if ttft_slo is not None and p99 is not None and p99 > ttft_slo:
        return f"p99 TTFT {p99:.0f} ms broke the TTFT SLO of {ttft_slo:g} ms at {result.get('label')}"
    tput = float(result.get("output_throughput") or 0.0)
    if best_so_far > 0 and tput < best_so_far * (1 + SWEEP_MIN_GAIN):
        return (f"throughput stopped rising: {tput:.1f} tok/s at {result.get('label')} is less than "
                f"{SWEEP_MIN_GAIN:.0%} above the best so far ({best_so_far:.1f} tok/s)")
    return None


def sweep_levels(max_level: int = SWEEP_MAX_LEVEL) -> list[int]:
    out, c = [], 1
    while c <= max_level:
        out.append(c)
        c *= 2
    return out


def default_num_prompts(concurrency: int | None) -> int:
    """Per level when the user gives no --num-prompts: enough to keep every user busy a few times."""
    return max(10, 3 * (concurrency or 1))


def poisson_fit(offsets_s: Sequence[float], request_rate: float) -> dict[str, float]:
    """How well send times fit a Poisson process at `request_rate`: the mean inter-arrival with a
    95 % interval, and the Kolmogorov–Smirnov distance of the inter-arrivals to Exp(rate) with its
    asymptotic p-value (no scipy needed)."""
    t = np.sort(np.asarray(offsets_s, dtype=float))
    gaps = np.diff(np.concatenate([[0.0], t]))
    n = len(gaps)
    if n < 2:
        return {"n": n}
    mean = float(gaps.mean())
    half = 1.96 * float(gaps.std(ddof=1)) / math.sqrt(n)
    x = np.sort(gaps)
    cdf = 1.0 - np.exp(-request_rate * x)
    i = np.arange(1, n + 1)
    d = float(max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n)))
    return {"n": n, "mean_gap_s": mean, "ci95_low_s": mean - half, "ci95_high_s": mean + half,
            "expected_gap_s": 1.0 / request_rate, "ks_d": d, "ks_p": _kolmogorov_p(d, n)}


def _kolmogorov_p(d: float, n: int) -> float:
    """P(D_n > d) by the Kolmogorov distribution with Stephens' small-sample correction."""
    en = math.sqrt(n)
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 1e-3:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-10:
            break
    return float(min(1.0, max(0.0, total)))
