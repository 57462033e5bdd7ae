"""The one driver of a load level: `drive` sends a level's requests on their send offsets on the
engine's own event loop, in this process or in each client process (engine.load.pool), and the live
counters and per-level outcome it fills.

`st` is taken by Engine.generate just before a request is handed to the engine — after the
semaphore, as in vLLM's bench — so a request's stored send time is when it really went out.
Finished records are handed to the caller's thread through a deque it empties every DRAIN_S: nothing
is written to disk on the engine loop, so storing never delays another request's timestamps.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from engine.load.patterns import LoadLevel
from engine.load.results import LevelSummary
from engine.measure.client_health import cpu_sample, cpu_use
from engine.measure.metrics import RequestMetrics
from engine.types import GenerationRequest, RequestRecord, RunStatus
from engine.workloads.base import LevelSource

DRAIN_S = 0.05  # how often the driver thread collects finished records (and sees a stop)


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
    # The records of the requests in flight in this process (id -> record; `_send` adds and removes
    # them), so the tokens they have streamed so far can be counted (streamed_tokens).
    streaming: dict[int, RequestRecord] = field(default_factory=dict)
    # What the client processes' requests in flight have streamed so far (engine.load.pool sets it from
    # their "records" messages); 0 when the level runs in this process.
    remote_streamed: int = 0

    def reset(self, label: str, index: int) -> None:
        self.level, self.level_index = label, index
        self.sent = self.in_flight = self.completed = self.failed = self.stopped = self.output_tokens = 0
        self.started = time.perf_counter()
        self.recent_ttft_ms = []
        self.streaming = {}
        self.remote_streamed = 0

    def streamed_tokens(self) -> int:
        """Output tokens streamed so far by the requests still in flight in this process (each chunk's
        count as the engine gave it: provisional counts are 1 per chunk until the request settles).
        Safe from any thread: the records are copied in one C call, their lists only grow. When the
        level's requests run in client processes (engine.load.pool), the sum the processes last reported
        (every DRAIN_S while it changes)."""
        return sum(sum(record.chunk_tokens) for record in tuple(self.streaming.values())) + self.remote_streamed

    def snapshot(self) -> LoadSnapshot:
        """The counters now (a frozen LoadSnapshot), with the level's elapsed time, output tokens/s and
        the recent requests' TTFT percentiles."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        ttfts = list(self.recent_ttft_ms)
        return LoadSnapshot(
            level=self.level,
            level_index=self.level_index,
            levels_total=self.levels_total,
            sent=self.sent,
            in_flight=self.in_flight,
            completed=self.completed,
            failed=self.failed,
            stopped=self.stopped,
            elapsed_s=elapsed,
            output_throughput=self.output_tokens / elapsed,
            ttft_p50_ms=float(np.percentile(ttfts, 50)) if ttfts else None,
            ttft_p99_ms=float(np.percentile(ttfts, 99)) if ttfts else None,
        )


@dataclass(frozen=True)
class LoadSnapshot:
    """What LiveLoad.snapshot() returns: the running level (label, 0-based index of levels_total), its
    requests sent, in flight, completed, failed (the server or the connection failed them) and stopped
    (cut short by a stop); elapsed_s (s since the level began), output_throughput (settled output
    tokens / elapsed_s, tok/s, vLLM's name), ttft_p50_ms / ttft_p99_ms over the recent requests (ms; None
    before the first). A reader that shows other counts makes a copy: `dataclasses.replace(s, in_flight=0)`."""

    level: str
    level_index: int
    levels_total: int
    sent: int
    in_flight: int
    completed: int
    failed: int
    stopped: int
    elapsed_s: float
    output_throughput: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None


@dataclass
class LevelOutcome:
    level: LoadLevel
    status: RunStatus
    records: list[RequestRecord] = field(default_factory=list)  # in send (plan) order
    metrics: list[RequestMetrics] = field(default_factory=list)
    duration_s: float = 0.0
    start_ns: int = 0  # perf_counter_ns when the level began (send offsets are relative to it)
    # The level's first scheduled send (a rate pattern's first arrival is not at 0): its duration counts from here.
    first_send_ns: int = 0
    result: LevelSummary | None = None  # the level's figures (engine.load.results), set when it ends
    error: str | None = None
    client_health: dict[str, Any] = field(default_factory=dict)  # engine.measure.client_health.assess
    planned: int = 0  # requests the level meant to send (every conversation's every turn)
    warmup: dict[str, Any] = field(default_factory=dict)  # warm-ups sent and failed, the cache reset
    client_cpu: list[dict[str, Any]] = field(default_factory=list)  # per client process: client_health.cpu_use
    end_ns: int = 0  # perf_counter_ns when the last request ended
    client_processes: int = 1  # processes that drove the level (engine.load.pool)
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



async def drive(engine, live: LiveLoad, source: LevelSource, planned: Sequence, offsets: Sequence[float],
                max_concurrency: int | None, done_q: collections.deque, outcome: LevelOutcome, cancel: threading.Event,
                on_begin: Callable[[int], None] | None = None, *, indexes: Sequence[int] | None = None,
                next_index: Callable[[], int] | None = None, start_ns: int | None = None,
                limiter: Any = None) -> None:
    """The one driver of a level (run on the engine loop): send `planned` (engine.workloads.base.Planned)
    on `offsets` (s after the level's start) under `max_concurrency`, and every follow-up the source
    hands back; each finished record goes to `done_q` as (index, record). Requests go out in time order
    (offsets sorted, ties in plan order: the order engine.load.pool deals them in, so one process and
    N send on the same schedule). Fills the outcome's start_ns, first_send_ns, end_ns, duration_s (first
    scheduled send to the last request's end) and client_cpu (this process:
    engine.measure.client_health.cpu_use).

    A client process driving its share of a level (engine.load.pool) passes the level-wide `indexes`
    of its requests, `next_index` (the level's shared numbering of follow-ups), `start_ns`, the level's
    common start on the perf_counter clock (CLOCK_MONOTONIC, one clock for every process): each send
    waits for start_ns + its offset, and `limiter`, the level's one --max-concurrency shared by every
    process (engine.load.pool.CapGate: `await acquire()`, `release()`) in place of this process's own
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
    record = RequestRecord(request=request)  # filled in as it streams: live.streamed_tokens reads it
    key = id(record)
    live.streaming[key] = record
    try:
        return await engine.generate(request, record=record)  # st taken inside, just before sending
    finally:
        live.in_flight -= 1
        live.streaming.pop(key, None)
