"""The client checks itself: could tokentop, not the server, have shaped a run's figures?

Measured during every run:
  * event-loop lag on the engine thread — a probe task on the EngineHost loop asks to wake up every
    PROBE_INTERVAL_S and records how late it actually woke. A chunk that arrives while the loop is
    busy (or while another thread holds the GIL) is timestamped that much late, so the lag bounds the
    error of every timestamp;
  * send lag — a request's actual send time (`st`) minus the time the load pattern scheduled it,
    less its intended wait on the concurrency limit;
  * queue wait — the wait on the client's own concurrency limit (`--max-concurrency`), which
    `vllm bench serve` leaves out of its latencies (vLLM issue #54101): reported, not a fault;
  * chunks vs tokens — a server that sends several tokens per chunk makes per-chunk ITL overstate
    the per-token latency (vLLM #27485): TPOT stays right, ITL does not;
  * CPU use (load levels), per client process ("worker"): the process's CPU seconds over the level's
    wall time (cores), and how much of the level its event-loop thread — the one that sends requests
    and timestamps tokens — spent running on a CPU and, on Linux (/proc schedstat), waiting in the run
    queue for one. A loop that was runnable (running or waiting for a CPU) for LOOP_BUSY_MAX (90 %) of
    the level had work queued nearly all the time: requests went out and tokens were read as fast as
    that process could, so the client, not the server, set the level's throughput.

Thresholds (why, in README "The client checks itself"):
a loop runnable >= 90 % of the level is the client's limit (an asyncio loop idle less than a tenth of
the time is a queue, not a server waiting on its answers; measured: 84-97 % at the fast local
source's ceiling, 5-40 % against a CPU vLLM server). the figures compared with `vllm bench serve`
are means, and our fidelity target for TTFT is 5 %. A chunk that arrives during a stall waits out the
rest of it, so the expected delay of a timestamp is the mean loop lag: a mean lag (or mean send lag)
above 5 % of the run's median TTFT can bias mean TTFT by more than the whole error budget. The 2 ms
floor is twice epoll's 1 ms timeout granularity, which every asyncio client (vLLM's bench too) has.
p99 and max are stored to show stalls, not used to warn: on this busy 2-core machine p99 read 5-36 ms
in runs whose figures matched vLLM's within 3 % (OS descheduling stalls any client alike). More than
3 % tokens per chunk above one (the TPOT/throughput tolerance) makes per-chunk ITL misleading.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from engine.types import RequestRecord

PROBE_INTERVAL_S = 0.02  # 50 wake-ups/s: enough for a p99 over a few seconds, ~0.1 % of a core
PROBE_KEEP = 200_000  # samples kept (about an hour at 50 Hz)
LAG_FRACTION_OF_TTFT = 0.05
LAG_FLOOR_MS = 2.0
TOKENS_PER_CHUNK_MAX = 1.03
LOOP_BUSY_MAX = 0.90  # the loop thread runnable this share of a level or more: the client set the pace


@dataclass(frozen=True)
class CpuSample:
    """CPU clocks of this process and of the calling thread (take it on the event-loop thread)."""

    t_ns: int  # perf_counter_ns
    process_s: float  # CPU seconds of the whole process, every thread (time.process_time)
    thread_s: float  # CPU seconds of the calling thread (time.thread_time)
    thread_wait_s: float | None  # seconds the calling thread waited in the run queue (Linux schedstat), else None


def cpu_sample() -> CpuSample:
    """A CpuSample now. Call it on the thread to measure (the engine loop): a few microseconds."""
    wait = None
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:  # on-CPU ns, run-queue wait ns, slices
            wait = int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    return CpuSample(time.perf_counter_ns(), time.process_time(), time.thread_time(), wait)


def cpu_use(before: CpuSample, after: CpuSample, worker: int = 0) -> dict[str, Any]:
    """One client process's CPU use between two samples of its loop thread.

    Returns {"worker", "wall_s", "process_cores" (CPU s / wall s, all threads), "loop_busy" (the loop
    thread's CPU s / wall s, 0..1), "loop_waiting" (its run-queue wait / wall, None off Linux),
    "loop_runnable" (busy + waiting, 0..1), "pid"}."""
    wall = max((after.t_ns - before.t_ns) / 1e9, 1e-9)
    busy = min(1.0, max(0.0, after.thread_s - before.thread_s) / wall)
    waiting = None
    if after.thread_wait_s is not None and before.thread_wait_s is not None:
        waiting = min(1.0, max(0.0, after.thread_wait_s - before.thread_wait_s) / wall)
    return {"worker": worker, "pid": os.getpid(), "wall_s": wall,
            "process_cores": max(0.0, after.process_s - before.process_s) / wall,
            "loop_busy": busy, "loop_waiting": waiting, "loop_runnable": min(1.0, busy + (waiting or 0.0))}


class LoopLagProbe:
    """A task on an event loop that measures how late the loop wakes it. Samples are (t_s, lag_s)
    on the perf_counter clock; `window()` gives one run's share. Costs one wake-up per interval."""

    def __init__(self, interval_s: float = PROBE_INTERVAL_S, keep: int = PROBE_KEEP):
        self.interval_s = interval_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._task: asyncio.Task | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Call from any thread; the probe runs on `loop` until stop()."""

        def _create() -> None:
            if self._task is None or self._task.done():
                self._task = loop.create_task(self._run())

        loop.call_soon_threadsafe(_create)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        task = self._task
        if task is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    async def _run(self) -> None:
        interval = self.interval_s
        samples, lock = self._samples, self._lock
        while True:
            due = time.perf_counter() + interval
            await asyncio.sleep(interval)
            now = time.perf_counter()
            with lock:
                samples.append((now, max(0.0, now - due)))

    def window(self, since_s: float, until_s: float | None = None) -> list[float]:
        """Lags (seconds) of the wake-ups between since and until (perf_counter seconds)."""
        until = time.perf_counter() if until_s is None else until_s
        with self._lock:
            return [lag for t, lag in self._samples if since_s <= t <= until]


def _dist(values_ms: Sequence[float]) -> dict[str, float | int] | None:
    if not len(values_ms):
        return None
    arr = np.asarray(values_ms, dtype=float)
    return {"n": int(arr.size), "mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
            "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}


def lag_threshold_ms(median_ttft_ms: float | None) -> float:
    """Mean loop lag / send lag above this is a warning: 5 % of the median TTFT, at least 2 ms."""
    if not median_ttft_ms or median_ttft_ms <= 0:
        return LAG_FLOOR_MS
    return max(LAG_FLOOR_MS, LAG_FRACTION_OF_TTFT * median_ttft_ms)


def assess(records: Iterable[RequestRecord], loop_lags_s: Sequence[float],
           cpu: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The run's client-health figures, with warnings (the client may have shaped the figures) and
    notes (what the figures leave out). Times in milliseconds; `cpu` is one `cpu_use()` dict per client
    process (a load level), kept as "client_cpu" with "client_bound" (True when any process's loop was
    runnable >= LOOP_BUSY_MAX of the level; None when not measured)."""
    records = list(records)
    ok = [r for r in records if r.success and r.chunk_ns]
    ttfts = [(r.chunk_ns[0] - r.st_ns) / 1e6 for r in ok]
    median_ttft = float(np.median(ttfts)) if ttfts else None
    threshold = lag_threshold_ms(median_ttft)

    loop = _dist([x * 1000.0 for x in loop_lags_s])
    send = _dist([max(0, r.st_ns - r.scheduled_ns - (r.queue_wait_ns or 0)) / 1e6
                  for r in records if r.scheduled_ns is not None and r.st_ns])
    queue = _dist([r.queue_wait_ns / 1e6 for r in records if r.queue_wait_ns is not None])
    chunks = sum(len(r.chunk_tokens) for r in ok)
    tokens = sum(r.output_tokens for r in ok)
    # The first chunk of a chat stream often carries only the role (0 tokens): count chunks with tokens.
    counts = [np.asarray(r.chunk_tokens) for r in ok]  # per request, counted in numpy (long streams)
    token_chunks = sum(int(np.count_nonzero(c > 0)) for c in counts) or chunks
    per_chunk = tokens / token_chunks if token_chunks else None
    multi = sum(int(np.count_nonzero(c > 1)) for c in counts)

    warnings: list[str] = []
    notes: list[str] = []
    if loop and loop["mean"] > threshold:
        warnings.append(f"client event loop lagged: mean {loop['mean']:.1f} ms (p99 {loop['p99']:.0f} ms) > "
                        f"{threshold:.1f} ms; timestamps may be late — the client may be the bottleneck")
    if send and send["mean"] > threshold:
        warnings.append(f"requests went out late: mean send lag {send['mean']:.1f} ms (p99 {send['p99']:.0f} ms) > "
                        f"{threshold:.1f} ms; the load pattern was not met — the client may be the bottleneck")
    if per_chunk is not None and per_chunk > TOKENS_PER_CHUNK_MAX:
        warnings.append(f"the server sent {per_chunk:.2f} tokens per chunk: per-chunk ITL is not per-token "
                        f"latency; use TPOT")
    cpu = [dict(c) for c in cpu or ()]
    bound = [c for c in cpu if (c.get("loop_runnable") or 0.0) >= LOOP_BUSY_MAX]
    if bound:
        worst = max(bound, key=lambda c: c["loop_runnable"])
        who = ("its event loop" if len(cpu) == 1
               else f"worker {worst['worker']}'s event loop ({len(bound)} of {len(cpu)} workers)")
        split = (f" (running {worst['loop_busy']:.0%}, waiting for a CPU {worst['loop_waiting']:.0%})"
                 if worst.get("loop_waiting") is not None else "")
        warnings.append(f"the client was the bottleneck: {who} was busy {worst['loop_runnable']:.0%} of the level"
                        f"{split}; throughput is the client's, not the server's — use more --client-processes "
                        f"or free CPU cores")
    if queue and queue["mean"] > 0.5 and median_ttft:
        notes.append(f"latencies leave out a mean {queue['mean']:.0f} ms (p99 {queue['p99']:.0f} ms) wait on "
                     f"the client's concurrency limit, as vllm bench serve does (vLLM #54101)")
    return {
        "loop_lag_ms": loop,
        "probe_interval_ms": PROBE_INTERVAL_S * 1000.0,
        "send_lag_ms": send,
        "queue_wait_ms": queue,
        "chunks": chunks,
        "output_tokens": tokens,
        "tokens_per_chunk": per_chunk,
        "multi_token_chunks": multi,
        "median_ttft_ms": median_ttft,
        "lag_threshold_ms": threshold,
        "client_cpu": cpu or None,
        "client_bound": (bool(bound) if cpu else None),
        "warnings": warnings,
        "notes": notes,
    }
