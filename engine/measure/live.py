"""Live gauge maths for one streaming request (model output is made safe for a terminal by
engine/terminal_text.py, the one place that strips control characters).

`LiveMeter.feed(chunk)` is called on the engine thread for every chunk: it is the pending
deque's own `append` (a C call, thread-safe without a lock: collections.deque), so the engine's
timestamps are never delayed. The UI calls `snapshot()` on a timer (4-10 Hz): that drains the
buffer and updates running totals a batch at a time (list comprehensions, sums, bisect over the
chunk times: the per-chunk Python loop runs only for chunks with reasoning text or a provisional
count), so a snapshot costs O(new chunks) in C and O(buckets touched) in Python, not O(all chunks).
Chunk times are taken on one clock as chunks arrive (time.perf_counter_ns), so they never decrease;
"tok/s now" relies on that (a bisect over the times), the sparkline's buckets do not.

Definitions follow vLLM's (engine/measure/metrics.py): TTFT = first chunk - st; ITL = gaps between
successive chunks; TPOT = (last chunk - first chunk) / (tokens - 1); the request's TPS is the
article's batch-1 TPS, tokens / elapsed (E2EL once finished). `st` is the engine's own (the record
the engine fills in, `begin(record=...)`) from the moment the engine takes it, so before the first
chunk: the live TTFT is the stored TTFT and never changes at the end (until then, and without a record,
`st` is the moment the request was handed to the engine). `finish(record=record)` switches to the
record's final per-chunk token counts (engine.measure.token_counts: a server without per-event usage is counted
after the request), so the final gauges equal the stored metrics. While a request streams, a chunk whose count is
provisional (Chunk.exact False) is counted with `count` (the model's tokenizer, on the UI thread
that takes the snapshot) when one is given; the snapshot says when the count is an estimate.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass, field
from itertools import accumulate, islice, repeat, starmap

from engine.measure.token_counts import is_estimated
from engine.types import Chunk, RequestRecord

NS = 1_000_000_000


@dataclass(frozen=True)
class LiveSnapshot:
    tokens: int = 0
    chunks: int = 0
    elapsed_s: float = 0.0
    ttft_s: float | None = None
    tps_now: float = 0.0  # tokens in the last `window_s` / window
    tps_request: float = 0.0  # tokens / elapsed (article's TPS; E2EL once done)
    itl_last_s: float | None = None
    itl_mean_s: float | None = None
    tpot_s: float | None = None
    series: tuple[float, ...] = ()  # tok/s per bucket since st, for a sparkline
    text: str = ""  # output text that arrived since the previous snapshot (raw, unsanitised)
    done: bool = False
    # Reasoning models: set once a chunk carried reasoning text. TTFO = first answer text - st.
    reasoning: bool = False
    ttfo_s: float | None = None
    reasoning_tokens: int = 0
    # How the tokens were counted (engine.measure.token_counts.SOURCES; known once done) and whether the
    # count is an estimate (provisional counts while streaming, or an estimated final count).
    token_source: str | None = None
    estimated: bool = False
    # Once done: "asked N, got M" when a request that enforced its length stopped early.
    stopped_early: tuple[int, int] | None = None
    finish_reason: str | None = None

    @property
    def decode_rate(self) -> float | None:
        return 1.0 / self.tpot_s if self.tpot_s else None


@dataclass
class _Totals:
    tokens: int = 0
    chunks: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    itl_sum_ns: int = 0
    itl_count: int = 0
    itl_last_ns: int | None = None
    buckets: list[int] = field(default_factory=list)  # tokens per bucket since st
    reasoning_tokens: int = 0  # tokens of chunks that carried reasoning text only
    reasoning_seen: bool = False
    first_answer_ns: int | None = None
    provisional: bool = False  # some chunk's count was not the server's/engine's
    times: list[int] = field(default_factory=list)  # every chunk's arrival, to recount at the end
    cum: list[int] = field(default_factory=list)  # tokens of chunks 0..i (for the 1 s window)
    window_lo: int = 0  # first chunk still inside the 1 s window (chunks before it have left it)


class LiveMeter:
    """Thread-safe accumulator of one request's chunks (or a sequence of requests: call begin())."""

    def __init__(self, window_s: float = 1.0, bucket_s: float = 0.25, max_series: int = 240, count=None):
        self.count = count  # text -> tokens for provisional chunks (a tokenizer), or None
        self.window_ns = int(window_s * NS)
        self.bucket_ns = int(bucket_s * NS)
        self.max_series = max_series
        self._state = threading.RLock()  # guards the totals (begin() may come from a worker thread)
        # Chunks not drained yet: appended on the engine thread, popped on the UI's (deque's append
        # and popleft are thread-safe). `feed` is bound to its append once, so a chunk costs one C call.
        self._pending: deque[Chunk] = deque()
        self.feed = self._pending.append  # type: ignore[method-assign,assignment]  # see feed()
        self.begin()

    # -- engine thread --------------------------------------------------------
    def feed(self, chunk: Chunk) -> None:  # noqa: F811 - each instance binds its deque's append
        """Called for every chunk on the engine thread: an append to the pending deque, nothing else
        (each instance replaces this method with the deque's own `append`)."""
        self._pending.append(chunk)

    # -- UI thread ------------------------------------------------------------
    def begin(self, st_ns: int | None = None, record: RequestRecord | None = None) -> None:
        """Start measuring a new request (st = now unless given). With the `record` the engine fills in,
        `st` becomes the engine's own `st` (record.st_ns, vLLM bench's "just before sending") as soon as
        the engine has taken it: TTFT is then the stored TTFT from the first token, and never changes
        when the request ends (106 ms while streaming, 102 ms stored, before)."""
        with self._state:
            self._pending.clear()  # the same deque: `feed` stays bound to it
            self.st_ns = time.perf_counter_ns() if st_ns is None else st_ns
            self._record = record
            self.end_ns: int | None = None
            self.done = False
            self.token_source: str | None = None
            self.stopped_early: tuple[int, int] | None = None
            self.finish_reason: str | None = None
            self._t = _Totals()
            self._text: list[str] = []

    def finish(self, st_ns: int | None = None, end_ns: int | None = None, record: RequestRecord | None = None) -> None:
        """The request ended: freeze the clock at its last chunk (or now); optionally take the
        engine's exact `st`. With the finished `record`, its final per-chunk token counts replace the
        live ones (when the meter saw every chunk), so the final gauges equal the stored figures."""
        with self._state:
            self._drain()
            if record is not None:
                st_ns = st_ns or record.st_ns
            if st_ns:
                self.st_ns = st_ns
            if record is not None:
                self._recount(record)
            self.end_ns = end_ns or self._t.last_ns or time.perf_counter_ns()
            self.done = True

    def _recount(self, record: RequestRecord) -> None:
        t = self._t
        self.token_source = record.token_count_source
        self.finish_reason = record.finish_reason
        request = record.request
        asked = getattr(request, "max_tokens", None) if getattr(request, "enforce_length", False) else None
        if record.success and asked is not None and record.output_tokens < asked:
            self.stopped_early = (asked, record.output_tokens)
        counts = record.chunk_tokens
        if len(counts) != len(t.times):
            return
        cum = list(accumulate(counts))
        same = cum == t.cum  # the live counts were the record's (exact counts: the usual stream)
        t.provisional = False
        t.tokens = record.output_tokens  # what TPOT and TPS are stored with
        if record.reasoning_tokens is not None:
            t.reasoning_tokens = record.reasoning_tokens
        if same:  # the sparkline's buckets and the 1 s window already hold these counts
            return
        t.buckets = []
        t.cum = cum
        t.window_lo = 0
        self._add_to_buckets(t.times, list(counts), 0)

    def _drain(self) -> None:
        record = self._record
        if record is not None and record.st_ns:
            # Taken before the request was sent, so before any of its chunks arrived (a resend on a
            # fresh connection takes it again, also before the first chunk).
            self.st_ns = record.st_ns
        pending = self._pending
        n = len(pending)  # what the engine thread appended so far; later chunks wait for the next drain
        if not n:
            return
        new = list(starmap(pending.popleft, repeat((), n)))  # n pops, in C
        t = self._t
        times = [c.t_ns for c in new]
        self._text.extend([c.text for c in new])
        if any([c.reasoning for c in new]) or not all([c.exact for c in new]):
            tokens = self._count_each(new)
        else:  # the usual stream: exact counts, answer text only
            tokens = [c.tokens for c in new]
        if t.first_answer_ns is None:
            t.first_answer_ns = next((c.t_ns for c in new if c.text), None)
        # ITL: the gaps between successive chunks (the first chunk of the request has none); their
        # sum is the last chunk's time minus the one before this batch.
        if t.first_ns is None:
            t.first_ns = prev = times[0]
            gaps = n - 1
        else:
            prev = t.last_ns if t.last_ns is not None else times[0]
            gaps = n
        if gaps:
            t.itl_sum_ns += times[-1] - prev
            t.itl_count += gaps
            t.itl_last_ns = times[-1] - (times[-2] if n > 1 else prev)
        t.last_ns = times[-1]
        t.chunks += n
        i0 = len(t.times)
        t.times.extend(times)
        t.cum.extend(accumulate(tokens, initial=t.cum[-1] if t.cum else 0))
        del t.cum[i0]  # accumulate's `initial`, yielded first
        t.tokens += t.cum[-1] - (t.cum[i0 - 1] if i0 else 0)
        self._add_to_buckets(t.times, tokens, i0)

    def _count_each(self, new: list[Chunk]) -> list[int]:
        """Each chunk's tokens, one at a time: a provisional count is replaced by `count` (the
        tokenizer) when there is one, and reasoning-only chunks add to the reasoning tokens."""
        t = self._t
        count = self.count
        out = []
        for c in new:
            tokens = c.tokens
            if not c.exact:
                t.provisional = True
                if count is not None:
                    try:
                        tokens = count(c.reasoning + c.text)
                    except Exception:  # a tokenizer that fails on this text: the provisional count
                        pass
            if c.reasoning:
                t.reasoning_seen = True
                if not c.text:
                    t.reasoning_tokens += tokens
            out.append(tokens)
        return out

    def _add_to_buckets(self, times: list[int], tokens: list[int], i0: int) -> None:
        """Add the tokens of chunks i0.. (times[i0:], tokens[j] for chunk i0 + j) to the sparkline's
        buckets (bucket b: st + b * bucket <= t < st + (b + 1) * bucket; chunks before st go to 0).
        Times in order: one bisect per bucket touched; otherwise one chunk at a time."""
        t = self._t
        st, size, buckets = self.st_ns, self.bucket_ns, t.buckets
        n = len(times)
        added = times[i0:]
        ordered = (i0 == 0 or not added or times[i0 - 1] <= added[0]) and added == sorted(added)
        if not ordered:
            for t_ns, k in zip(islice(times, i0, None), tokens):
                b = max(0, (t_ns - st) // size)
                if b >= len(buckets):
                    buckets.extend([0] * (b + 1 - len(buckets)))
                buckets[b] += k
            return
        cum = t.cum
        i = i0
        before = cum[i0 - 1] if i0 else 0
        while i < n:
            b = max(0, (times[i] - st) // size)
            end = bisect_left(times, st + (b + 1) * size, i, n)
            if b >= len(buckets):
                buckets.extend([0] * (b + 1 - len(buckets)))
            buckets[b] += cum[end - 1] - before
            before = cum[end - 1]
            i = end

    def snapshot(self, now_ns: int | None = None) -> LiveSnapshot:
        with self._state:
            return self._snapshot(now_ns)

    def _snapshot(self, now_ns: int | None) -> LiveSnapshot:
        self._drain()
        text, self._text = "".join(self._text), []
        t = self._t
        wall = now_ns or time.perf_counter_ns()
        # A finished request's clock stops at its last chunk (elapsed = E2EL)...
        now = self.end_ns if self.done and self.end_ns else wall
        elapsed_ns = max(0, now - self.st_ns)
        # ...but "tok/s now" keeps the wall clock, so it falls to 0 within one window of the last token.
        cutoff = wall - self.window_ns
        if t.cum:
            t.window_lo = lo = bisect_right(t.times, cutoff, t.window_lo)
            window_tokens = t.cum[-1] - (t.cum[lo - 1] if lo else 0)
        else:
            window_tokens = 0
        span = min(self.window_ns, max(0, wall - self.st_ns))
        tps_now = window_tokens * NS / span if span > 0 else 0.0
        ttft = (t.first_ns - self.st_ns) / NS if t.first_ns is not None else None
        tpot = None
        if t.tokens > 1 and t.first_ns is not None and t.last_ns is not None:
            tpot = (t.last_ns - t.first_ns) / NS / (t.tokens - 1)
        # The finished request's elapsed is its E2EL (last chunk - st).
        tps_request = t.tokens * NS / elapsed_ns if elapsed_ns > 0 else 0.0
        if self.done:
            n_full = len(t.buckets)
        else:  # complete buckets only; a stall shows as zeros
            n_full = int(elapsed_ns // self.bucket_ns)
            if n_full > len(t.buckets):
                t.buckets.extend([0] * (n_full - len(t.buckets)))
        scale = NS / self.bucket_ns
        series = tuple(v * scale for v in t.buckets[max(0, n_full - self.max_series):n_full])
        return LiveSnapshot(
            tokens=t.tokens,
            chunks=t.chunks,
            elapsed_s=elapsed_ns / NS,
            ttft_s=ttft,
            tps_now=tps_now,
            tps_request=tps_request,
            itl_last_s=t.itl_last_ns / NS if t.itl_last_ns is not None else None,
            itl_mean_s=t.itl_sum_ns / t.itl_count / NS if t.itl_count else None,
            tpot_s=tpot,
            series=series,
            text=text,
            done=self.done,
            reasoning=t.reasoning_seen,
            ttfo_s=((t.first_answer_ns - self.st_ns) / NS
                    if t.reasoning_seen and t.first_answer_ns is not None else None),
            reasoning_tokens=t.reasoning_tokens,
            token_source=self.token_source,
            estimated=t.provisional or is_estimated(self.token_source),
            stopped_early=self.stopped_early if self.done else None,
            finish_reason=self.finish_reason if self.done else None,
        )
