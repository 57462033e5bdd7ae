"""The app's own cost on the token path (issue 24): what the engine thread pays per chunk, what the
Live screen's 10 Hz tick pays per chunk it drains, and widgets left alone when their value is the
same. Counted in function calls (sys.setprofile's "call" and "c_call" events: each Python frame run,
a generator's every step included, and each C function called from Python), not milliseconds, so a
busy machine cannot make these flaky; the wall-clock figures are benchmarks/tick_profile.py's and ui_overhead.py's."""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from bisect import bisect_right

import pytest

from engine.measure.live import LiveMeter, LiveSnapshot
from engine.types import Chunk

MS = 1_000_000


def calls_during(fn) -> int:
    """Function calls (Python frames entered, C functions called from Python) made by fn()."""
    n = 0

    def prof(frame, event, arg):
        nonlocal n
        if event in ("call", "c_call"):
            n += 1

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return n


def test_feeding_a_chunk_runs_no_python_code_on_the_engine_thread():
    """The engine thread's share of a chunk is one C call (before: a Python method taking a lock),
    so a 100,000 tok/s stream does not slow the engine that produces it."""
    m = LiveMeter()
    m.begin(st_ns=0)
    chunks = [Chunk(i * MS, "x ", 1) for i in range(1000)]
    feed = m.feed  # bound once per request, as the orchestrator does
    n = calls_during(lambda: [feed(c) for c in chunks])
    assert n <= len(chunks) + 5  # the C append itself: no Python frame, no lock per chunk
    assert m.snapshot(now_ns=1000 * MS).tokens == 1000


def test_a_tick_draining_ten_thousand_chunks_makes_no_call_per_chunk():
    """At 100,000 tok/s a 10 Hz tick drains 10,000 chunks: the snapshot's Python work is per batch
    and per sparkline bucket, not per chunk (before: ~5 calls per chunk: max(), appends, len())."""
    m = LiveMeter(bucket_s=0.25)
    m.begin(st_ns=0)
    for i in range(10_000):
        m.feed(Chunk(i * 10_000, "x ", 1))  # 10 µs apart: 100,000 tok/s over 0.1 s
    snap = None

    def take():
        nonlocal snap
        snap = m.snapshot(now_ns=100 * MS)

    assert calls_during(take) < 100
    assert snap.tokens == 10_000 and snap.tps_now == pytest.approx(100_000)
    assert len(snap.text) == 20_000


def reference(chunks: list[Chunk], st: int, now: int, window_ns: int = 1_000 * MS,
              bucket_ns: int = 250 * MS) -> tuple:
    """The gauge figures one chunk at a time, straight from the definitions (vLLM's TTFT/ITL/TPOT,
    tokens in the last window, tokens per bucket since st)."""
    times = [c.t_ns for c in chunks]
    tokens = sum(c.tokens for c in chunks)
    gaps = [b - a for a, b in zip(times, times[1:])]
    lo = bisect_right(times, now - window_ns)
    span = min(window_ns, max(0, now - st))
    buckets: list[int] = []
    for c in chunks:
        b = max(0, (c.t_ns - st) // bucket_ns)
        buckets += [0] * (b + 1 - len(buckets))
        buckets[b] += c.tokens
    n_full = int(max(0, now - st) // bucket_ns)
    buckets += [0] * (n_full - len(buckets))
    return (tokens, len(chunks), (times[0] - st) / 1e9 if times else None,
            sum(c.tokens for c in chunks[lo:]) * 1e9 / span if span > 0 else 0.0,
            gaps[-1] / 1e9 if gaps else None, sum(gaps) / len(gaps) / 1e9 if gaps else None,
            (times[-1] - times[0]) / 1e9 / (tokens - 1) if tokens > 1 else None,
            tuple(v * 4.0 for v in buckets[max(0, n_full - 240):n_full]), "".join(c.text for c in chunks))


def figures(s: LiveSnapshot) -> tuple:
    return (s.tokens, s.chunks, s.ttft_s, s.tps_now, s.itl_last_s, s.itl_mean_s, s.tpot_s, s.series, s.text)


@pytest.mark.parametrize("seed", range(40))
def test_batched_snapshots_equal_the_definitions_chunk_by_chunk(seed):
    """The batched drain shows what the per-chunk definitions give, tick after tick, for bursts,
    stalls, zero-token chunks and chunks before st (an equivalence guard for the batching)."""
    rnd = random.Random(seed)
    m = LiveMeter(window_s=1.0, bucket_s=0.25)
    st = 5_000 * MS
    m.begin(st_ns=st)
    t = st - rnd.randint(0, 100 * MS)
    seen: list[Chunk] = []
    text = ""
    now = st
    for _ in range(30):
        for _ in range(rnd.choice([0, 1, 2, 40, 400])):
            t += rnd.choice([0, 1_000, MS, 300 * MS, 1_100 * MS])
            c = Chunk(t, rnd.choice(["", "ab ", "x"]), rnd.choice([0, 1, 1, 3]))
            m.feed(c)
            seen.append(c)
        now = max(now, t + rnd.randint(0, 2_000 * MS))  # the wall clock: never back
        snap = m.snapshot(now_ns=now)
        text += snap.text
        want = reference(seen, st, now)
        got = figures(snap)
        assert got[:7] == pytest.approx(want[:7]) and got[7] == pytest.approx(want[7]) and text == want[8]


def test_chunks_fed_while_a_tick_drains_are_all_counted():
    """The engine thread keeps appending while the UI drains: nothing is lost or counted twice."""
    m = LiveMeter()
    m.begin(st_ns=0)
    total = 50_000
    done = threading.Event()

    def produce():
        for i in range(total):
            m.feed(Chunk(i + 1, "x", 1))
        done.set()

    th = threading.Thread(target=produce)
    th.start()
    tokens = 0
    while not done.is_set():
        tokens = m.snapshot(now_ns=10**12).tokens
    th.join()
    assert m.snapshot(now_ns=10**12).tokens == total >= tokens


def test_gauges_left_alone_when_what_they_show_is_the_same():
    """A tick whose figures did not change redraws nothing of the gauges (each Static.update is a
    layout pass of the screen); a changed figure is still drawn, and the note changes with the count."""
    from textual.app import App
    from textual.widgets import Digits, Static

    from tui.widgets.gauges import NOTE, GaugePanel

    class Host(App):
        def compose(self):
            yield GaugePanel()

    async def go():
        app = Host()
        async with app.run_test(size=(80, 24)) as pilot:
            panel = app.query_one(GaugePanel)
            updates: list[str] = []

            def counted(widget, name):
                original = widget.update

                def update(*args, **kwargs):
                    updates.append(name)
                    return original(*args, **kwargs)

                widget.update = update

            for name in (".gauge-stats", ".gauge-note"):
                counted(panel.query_one(name, Static), name)
            counted(panel.query_one(".gauge-digits", Digits), "digits")
            snap = LiveSnapshot(tokens=10, chunks=10, elapsed_s=1.0, tps_now=10.0, tps_request=10.0)
            panel.show(snap)
            first = list(updates)
            panel.show(snap)
            panel.show(LiveSnapshot(tokens=10, chunks=10, elapsed_s=1.0, tps_now=10.0, tps_request=10.0))
            assert updates == first and set(first) >= {".gauge-stats", "digits"}
            panel.show(LiveSnapshot(tokens=11, chunks=11, elapsed_s=1.1, tps_now=10.0, tps_request=10.0,
                                    estimated=True))
            assert updates[len(first):] == [".gauge-stats", ".gauge-note"]
            await pilot.pause()
            note = panel.query_one(".gauge-note", Static)
            assert "counted by tokentop" in str(note.render()) and NOTE in str(note.render())

    asyncio.run(go())
