"""The load runner: runs load levels on an EngineHost, one after another, and stops a sweep.

What a level sends comes from a workload (engine/workloads): synthetic token prompts, a dataset, a
timed trace (its requests carry their own send times: a fixed schedule, `LoadLevel.self_timed`) or
multi-turn conversations (a conversation's next turn is handed back by the workload when a reply has
come in, and sent after its think time). The workload is a source of requests; engine.load.driver's
`drive` is the only driver, on the send offsets of engine.load.patterns, in this process or shared
among client processes (engine.load.pool).

Before every level: `--num-warmups` copies of its first request are sent and not measured (as
`vllm bench serve` does), then the engine's prefix cache is reset (in-process: AsyncLLM's
reset_prefix_cache(); a vLLM server: POST /reset_prefix_cache, which only answers in its dev mode), so
a repeated level does not read the previous level's cache as speed. Whether it could be reset is
stored with the level.

The automatic sweep (engine.load.patterns.sweep_levels) stops when a level's output throughput is
less than SWEEP_MIN_GAIN (10 %) above the best level so far ("throughput stopped rising"), when a
level's p99 TTFT is above the TTFT SLO, when a level has failed requests, or at the maximum level.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from engine.engines.host import EngineHost
from engine.errors import TokentopError
from engine.load.driver import DRAIN_S, LevelOutcome, LiveLoad, drive
from engine.load.patterns import LoadLevel, send_offsets
from engine.load.results import LevelSummary
from engine.load.summary import level_extras, summarise_level
from engine.measure.client_health import assess
from engine.measure.gc_heap import heap_frozen
from engine.measure.metrics import RequestMetrics, request_metrics
from engine.terminal_text import one_line
from engine.types import BadRequestError, GenerationRequest, RequestRecord
from engine.workloads.base import LevelSource, Workload
from engine.workloads.tokens import Tokens

if TYPE_CHECKING:
    from engine.load.pool import ClientPool

SWEEP_MIN_GAIN = 0.10  # a level must beat the best so far by 10 % to count as "throughput still rising"

RecordSink = Callable[[int, RequestRecord, RequestMetrics], None]


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
        self.pool: ClientPool | None = None  # with client_processes > 1

    def start_clients(self) -> None:
        """Start the client processes (client_processes > 1), once: each runs its own engine that sends
        its share of every level (engine.load.pool). BadRequestError when the engine runs in this
        process only (the in-process vLLM engine); EngineError when a process cannot start."""
        if self.client_processes <= 1 or self.pool is not None:
            return
        from engine.load.pool import ClientPool  # imported when first used: multiprocessing is not free

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
        offsets = send_offsets(level, planned, self.seed + level_index)
        # Finished records cross to this thread through a deque (appends are atomic), collected every
        # DRAIN_S: the engine loop never wakes this thread per request (each wake-up takes the GIL
        # from the loop that timestamps tokens).
        done_q: collections.deque = collections.deque()
        cancel = threading.Event()
        by_index: dict[int, tuple[RequestRecord, RequestMetrics]] = {}
        frozen = contextlib.ExitStack()

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
            frozen.enter_context(heap_frozen())  # no full GC pass inside the level (as vllm bench serve)
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
            outcome.error = one_line(exc, 300, typed=True)
        drain()
        frozen.close()
        order = sorted(by_index)
        outcome.records = [by_index[i][0] for i in order]
        outcome.metrics = [by_index[i][1] for i in order]
        ok = sum(1 for m in outcome.metrics if m.success)
        if outcome.status == "completed" and ok == 0:
            outcome.status = "failed"
            outcome.error = next((r.error for r in outcome.records if r.error), "no request ran")
        result = summarise_level(level, outcome.metrics, outcome.duration_s, self.slo_ms)
        # A stop cuts the requests in flight short: they are kept (what streamed) as "aborted", but they
        # did not fail — failed means the server or the connection failed. Requests the stop kept from
        # being sent are in no count (and not stored): "not_sent" says how many the plan had left.
        stopped = sum(1 for r in outcome.records if r.aborted and not r.success)
        failed = max(0, result.failed - stopped)
        counts: dict[str, Any] = {"aborted": stopped, "failed": failed,
                                  "not_sent": max(0, outcome.planned - len(outcome.records))}
        if stopped:
            counts["failures_by_kind"] = {k: n for k, n in result.failures_by_kind.items() if k != "aborted"}
            ended = result.completed + failed
            counts["failure_rate"] = failed / ended if ended else None
        outcome.result = replace(result, **level_extras(outcome.records, outcome.warmup, self.workload), **counts)
        begin_s = outcome.start_ns / 1e9 if outcome.start_ns else time.perf_counter() - outcome.duration_s
        lags = outcome.loop_lags_s
        if lags is None:
            end_s = outcome.end_s if outcome.start_ns else begin_s + outcome.duration_s
            lags = self.host.loop_lag.window(begin_s, end_s)
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
                ok, note = False, one_line(exc, 200, typed=True)
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
            result = outcome.result  # a completed level has its figures
            verdict = sweep_verdict(result, best, self.slo_ms) if auto_stop and result is not None else None
            best = max(best, float(result.output_throughput or 0.0) if result is not None else 0.0)
            if verdict:
                reason = verdict
                break
        return outcomes, reason


class _Stopped(TokentopError):
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


def sweep_verdict(result: LevelSummary | Mapping[str, Any], best_so_far: float, slo_ms: dict[str, float]) -> str | None:
    """Why an automatic sweep should stop after this level, or None to go on. result: the level's
    LevelSummary, or its stored dict (the same names: failed, label, p99_ttft_ms ms, output_throughput tok/s)."""
    figures = _Stored(result) if isinstance(result, Mapping) else result
    if figures.failed:
        return f"{figures.failed} request(s) failed at {figures.label}"
    ttft_slo = slo_ms.get("ttft")
    p99 = figures.p99_ttft_ms
    if ttft_slo is not None and p99 is not None and p99 > ttft_slo:
        return f"p99 TTFT {p99:.0f} ms broke the TTFT SLO of {ttft_slo:g} ms at {figures.label}"
    tput = float(figures.output_throughput or 0.0)
    if best_so_far > 0 and tput < best_so_far * (1 + SWEEP_MIN_GAIN):
        return (f"throughput stopped rising: {tput:.1f} tok/s at {figures.label} is less than "
                f"{SWEEP_MIN_GAIN:.0%} above the best so far ({best_so_far:.1f} tok/s)")
    return None


class _Stored:
    """A stored level's dict read by sweep_verdict's names (a missing key reads as None)."""

    def __init__(self, d: Mapping[str, Any]) -> None:
        self.failed, self.label = d.get("failed"), d.get("label")
        self.p99_ttft_ms, self.output_throughput = d.get("p99_ttft_ms"), d.get("output_throughput")
