"""Profile of the Live screen's 10 Hz tick (a script that prints figures, not a test; issue 24).

The tick is driven by hand, so every tick sees exactly the same work whatever the machine's load:
before each tick, `rate / 10` one-token chunks (as benchmarks/overhead_fake.py's
SyntheticOverheadEngine sends them: a letter and a space) go through the request's `LiveMeter.feed` (the call the
orchestrator binds on the engine thread), then `LiveScreen.tick()` runs and the app renders the
frame (Pilot, 120x40). Three figures per rate:

- the tick alone (meter snapshot, sanitiser, text pane, gauges): median ms and CPU instructions
  (perf_event's instruction counter where the kernel allows it, else `-`);
- tick + the frame it causes (Textual's refresh/compositor, where the text pane's wrap happens);
- the top functions by own time (cProfile) over the ticks, with call counts per tick, and the
  function calls per tick of tick + frame (cProfile's count: the same on a busy machine or a quiet one).

Run: .venv/bin/python benchmarks/tick_profile.py [--rates 10000 100000] [--ticks 40] [--top 15]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def profile_rate(rate: int, ticks: int, top: int) -> dict:
    try:
        from data.store.database import Store
    except ImportError:  # before data/ moved into subpackages
        from data.store import Store
    from overhead_fake import SyntheticOverheadEngine  # benchmarks/overhead_fake.py, beside this script

    from engine.measure.live import LiveMeter
    from engine.types import Chunk
    from tui.app import TokentopApp

    per_tick = max(1, rate // 10)
    tmp = Path(tempfile.mkdtemp(prefix="tokentop-tick-"))
    store = Store(tmp / "t.duckdb")
    app = TokentopApp(store=store, autostart=False, db_label="bench")
    out: dict = {"rate": rate, "chunks_per_tick": per_tick}
    async with app.run_test(size=(120, 40)) as pilot:
        live = app.screen
        live.ticker.pause()
        meter = LiveMeter()
        meter.begin()
        view = SimpleNamespace(meters={0: meter}, running=True, job=SimpleNamespace(job_id="j"))
        live._view = lambda: view
        live.query_one("StreamView").clear(head="› x")
        feed = meter.feed
        texts = SyntheticOverheadEngine().texts  # the benchmark source's text (aperiodic letters)
        sent = 0

        def push() -> None:
            nonlocal sent
            now = time.perf_counter_ns()
            for i in range(per_tick):
                feed(Chunk(now + i, texts[(sent + i) % len(texts)], 1))
            sent += per_tick

        warm = 30  # fill the text pane to its cap first (20,000 characters)
        for _ in range(warm):
            push()
            live.tick()
            await pilot.pause()
        tick_s, frame_s = [], []
        prof = cProfile.Profile()
        for _ in range(ticks):
            push()
            t0 = time.perf_counter()
            prof.enable()
            live.tick()
            t1 = time.perf_counter()
            await pilot.pause()
            prof.disable()
            t2 = time.perf_counter()
            tick_s.append(t1 - t0)
            frame_s.append(t2 - t0)
        # the engine thread's share: feed() per chunk, timed alone
        t0 = time.perf_counter()
        for _ in range(ticks):
            push()
        feed_s = (time.perf_counter() - t0) / ticks
        meter.snapshot()
        out["tick_ms"] = statistics.median(tick_s) * 1000
        out["tick_frame_ms"] = statistics.median(frame_s) * 1000
        out["feed_ms_per_tick"] = feed_s * 1000
        s = io.StringIO()
        stats = pstats.Stats(prof, stream=s)
        rows = []
        for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
            rows.append((tt, ct, nc, f"{Path(file).name}:{line}({func})"))
        rows.sort(reverse=True)
        busy = [r for r in rows if "poll" not in r[3]]  # the event loop's idle wait is not work
        out["profiled_cpu_ms"] = sum(r[0] for r in busy) / ticks * 1000
        out["calls_per_tick"] = sum(r[2] for r in busy) / ticks
        tick_rows = [r for r in rows if r[3].endswith("(tick)")]
        if tick_rows:
            out["tick_cum_ms"] = tick_rows[0][1] / ticks * 1000
        out["top"] = [(name, tt / ticks * 1000, ct / ticks * 1000, nc / ticks) for tt, ct, nc, name in rows[:top]]
    store.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rates", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--ticks", type=int, default=40)
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    for rate in args.rates:
        r = asyncio.run(profile_rate(rate, args.ticks, args.top))
        print(f"rate {rate:,} tok/s ({r['chunks_per_tick']:,} chunks per tick): tick median {r['tick_ms']:.2f} ms,"
              f" tick+frame {r['tick_frame_ms']:.2f} ms, feed() {r['feed_ms_per_tick']:.2f} ms per tick's chunks")
        print(f"    under cProfile: tick {r.get('tick_cum_ms', float('nan')):.2f} ms, tick+frame work"
              f" {r['profiled_cpu_ms']:.2f} ms (idle poll left out),"
              f" {r['calls_per_tick']:,.0f} function calls per tick")
        print(f"    {'function':<58} {'own ms/tick':>11} {'cum ms/tick':>11} {'calls/tick':>10}")
        for name, own, cum, calls in r["top"]:
            print(f"    {name[:58]:<58} {own:>11.3f} {cum:>11.3f} {calls:>10.1f}")


if __name__ == "__main__":
    main()
