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
    the per-token latency (vLLM #27485): TPOT stays right, ITL does not.

Thresholds (why, in README "The client checks itself"): the figures compared with `vllm bench serve`
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
import threading
import time
from collections import deque
from typing import Any, Iterable, Sequence

import numpy as np

from engine.types import RequestRecord

PROBE_INTERVAL_S = 0.02  # 50 wake-ups/s: enough for a p99 over a few seconds, ~0.1 % of a core
PROBE_KEEP = 200_000  # samples kept (about an hour at 50 Hz)
LAG_FRACTION_OF_TTFT = 0.05
LAG_FLOOR_MS = 2.0
TOKENS_PER_CHUNK_MAX = 1.03


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


def assess(records: Iterable[RequestRecord], loop_lags_s: Sequence[float]) -> dict[str, Any]:
    """The run's client-health figures, with warnings (the client may have shaped the figures) and
    notes (what the figures leave out). Everything in milliseconds."""
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
    token_chunks = sum(1 for r in ok for n in r.chunk_tokens if n > 0) or chunks
    per_chunk = tokens / token_chunks if token_chunks else None
    multi = sum(1 for r in ok for n in r.chunk_tokens if n > 1)

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
        "warnings": warnings,
        "notes": notes,
    }
