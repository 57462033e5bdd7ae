"""UI overhead of the tokentop app (a script that prints figures, not a test).

(a) decode tokens/s of the same requests with the Live screen rendering (the app's orchestrator,
    its run watcher and the screen's 10 Hz timer) vs headless (EngineHost.submit with no UI), on the
    embedded vLLM engine, interleaved, medians;
(b) how many streamed tokens/s the UI path (the orchestrator's chunk event -> the watcher's LiveMeter
    on the engine thread + the Live screen's 10 Hz timer) absorbs without falling behind, from
    benchmarks/overhead_fake.py's SyntheticOverheadEngine —
    a fake source, used only here;
(c) time to first frame of the installed `tokentop` in tmux (median of 3).

Run: .venv/bin/python benchmarks/ui_overhead.py [--rounds 6] [--tokens 64] [--parts abc]
(--parts b: only the synthetic keep-up test, no vLLM; --b-rounds N repeats it N times. Part (b)'s
"achieved" is wall clock from the job's start to its end being seen, as first measured; "stream" is
the source's own rate between its first and last chunk, without the job's start and end.)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = "Explain the concept of 'attention mechanism' in transformer models in simple terms."


def decode_rate(record) -> float:
    from engine.measure.metrics import request_metrics

    m = request_metrics(record)
    return m.decode_rate or 0.0


async def part_a(rounds: int, tokens: int) -> dict:
    from data.jobs.session import Session
    from data.store.database import Store
    from engine.types import GenerationRequest
    from tui.app import TokentopApp

    tmp = Path(tempfile.mkdtemp(prefix="tokentop-bench-"))
    store = Store(tmp / "a.duckdb")
    session = Session(store, dict(engine="vllm", model=None))
    session.start_engine()
    req = GenerationRequest(PROMPT, max_tokens=tokens, temperature=0.8, enforce_length=True, case_id="bench")
    ui, headless = [], []
    try:
        session.host.submit(req).result(120)  # warm-up
        app = TokentopApp(session=session, store=store, db_label="bench")
        async with app.run_test(size=(120, 40)) as pilot:
            live = app.screen
            for r in range(rounds):
                order = ("ui", "headless") if r % 2 == 0 else ("headless", "ui")
                for which in order:
                    if which == "headless":
                        rec = await asyncio.to_thread(lambda: session.host.submit(req).result(300))
                        headless.append(decode_rate(rec))
                    else:
                        # the app's path: its orchestrator runs the request, the Live screen renders
                        # the app's watcher (per-request meter fed from the engine thread)
                        job = app.runs.start_interactive(req)
                        live.ticker.resume()
                        # asyncio.sleep, not pilot.pause: each pause visits every widget and forces a
                        # frame, 20 times a second, work the real app does not do (benchmarks/ui_cpu.py)
                        while job.running:
                            await asyncio.sleep(0.05)
                        await pilot.pause(0.2)
                        ui.append(decode_rate(job.result.runs[0].outcome.records[0]))
    finally:
        session.shutdown()
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    mu, mh = statistics.median(ui), statistics.median(headless)
    return {"ui": ui, "headless": headless, "median_ui": mu, "median_headless": mh,
            "overhead_pct": (mh - mu) / mh * 100 if mh else float("nan")}


async def part_b(rates: list[int], seconds: float) -> list[dict]:
    from types import SimpleNamespace

    from overhead_fake import SyntheticOverheadEngine  # benchmarks/overhead_fake.py, beside this script

    from data.store.database import Store
    from engine.engines.host import EngineHost
    from engine.orchestrator import Orchestrator
    from engine.types import GenerationRequest
    from tui.app import TokentopApp
    from tui.widgets.gauges import GaugePanel

    out = []
    tmp = Path(tempfile.mkdtemp(prefix="tokentop-bench-"))
    store = Store(tmp / "b.duckdb")
    try:
        for rate in rates:
            engine = SyntheticOverheadEngine(rate_tok_s=rate)
            host = EngineHost(engine)
            host.start().result(10)
            app = TokentopApp(store=store, autostart=False, db_label="bench")
            async with app.run_test(size=(120, 40)) as pilot:
                live = app.screen
                ticks: list[float] = []
                original = live.tick

                def timed_tick():
                    t = time.perf_counter()
                    original()  # noqa: B023  (called only while this iteration's app runs)
                    ticks.append(time.perf_counter() - t)  # noqa: B023

                live.tick = timed_tick
                live.ticker.stop()
                live.ticker = live.set_interval(0.1, timed_tick)
                n = int(rate * seconds)
                app.runs.attach(SimpleNamespace(orchestrator=Orchestrator(host)))
                t0 = time.perf_counter()
                job = app.runs.start_interactive(GenerationRequest("x", max_tokens=n))
                live.ticker.resume()
                while job.running:
                    await pilot.pause(0.05)
                produced_s = time.perf_counter() - t0
                await pilot.pause(0.25)  # at most two ticks after the last token
                shown = live.query_one(GaugePanel).last.tokens
                # The source's own rate while the UI ran (first to last chunk, its timestamps), and the
                # job's fixed costs around it that `achieved` (wall clock, start to end seen) includes.
                ns = job.result.runs[0].outcome.records[0].chunk_ns
                stream = (len(ns) - 1) * 1e9 / (ns[-1] - ns[0]) if len(ns) > 1 and ns[-1] > ns[0] else 0.0
                out.append({"target": rate, "achieved": n / produced_s, "tokens": n, "shown_after_2_ticks": shown,
                            "stream": stream, "start_ms": (ns[0] / 1e9 - t0) * 1000 if ns else float("nan"),
                            "end_ms": (t0 + produced_s - ns[-1] / 1e9) * 1000 if ns else float("nan"),
                            "kept_up": shown == n and n / produced_s >= 0.95 * rate,
                            "tick_mean_ms": statistics.mean(ticks) * 1000, "tick_max_ms": max(ticks) * 1000})
            host.shutdown()
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def part_c(times: int = 3) -> list[float]:
    if shutil.which("tmux") is None:
        return []
    exe = ROOT / ".venv" / "bin" / "tokentop"
    results = []
    for _ in range(times):
        tmp = Path(tempfile.mkdtemp(prefix="tokentop-bench-"))
        name = f"ttff-{uuid.uuid4().hex[:6]}"
        t0 = time.perf_counter()
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "100", "-y", "30",
                        f"{exe} --db {tmp / 'c.duckdb'}"], check=True)
        while time.perf_counter() - t0 < 30:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
            if "F2 Live" in screen and "prompt" in screen:  # the first frame: tab bar and prompt box
                results.append(time.perf_counter() - t0)
                break
            time.sleep(0.02)
        subprocess.run(["tmux", "send-keys", "-t", name, "Escape", "q"])
        time.sleep(8)
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--skip-a", action="store_true")
    p.add_argument("--parts", default="abc", help="which parts to run, e.g. b or bc (default abc)")
    p.add_argument("--b-rounds", type=int, default=1, help="times to run part (b)'s rates")
    args = p.parse_args()
    if "c" in args.parts:
        c_part()
    if "b" in args.parts:
        for _ in range(args.b_rounds):
            b_part()
    if "a" in args.parts and not args.skip_a:
        a_part(args)


def c_part() -> None:
    print("(c) time to first frame (tmux, installed tokentop):")
    c = part_c()
    print(f"    runs {[round(x, 2) for x in c]} s, median {statistics.median(c):.2f} s (target < 1.5 s)"
          if c else ("    tmux missing" if shutil.which("tmux") is None else "    no first frame within 30 s"))


def b_part() -> None:
    print("(b) UI absorption from SyntheticOverheadEngine (fake source, benchmark only):")
    for row in asyncio.run(part_b([10_000, 50_000, 100_000], 3.0)):
        print(f"    target {row['target']:>7,} tok/s: achieved {row['achieved']:>9,.0f} tok/s, "
              f"shown {row['shown_after_2_ticks']:,}/{row['tokens']:,} after 2 ticks, "
              f"tick mean {row['tick_mean_ms']:.2f} ms max {row['tick_max_ms']:.1f} ms, kept up: {row['kept_up']}")
        print(f"        stream {row['stream']:>9,.0f} tok/s (first to last chunk); before the first chunk"
              f" {row['start_ms']:.0f} ms, after the last until the job ended {row['end_ms']:.0f} ms")


def a_part(args) -> None:
    print(f"(a) decode tok/s, {args.rounds} interleaved rounds of {args.tokens} tokens, embedded engine:")
    a = asyncio.run(part_a(args.rounds, args.tokens))
    print(f"    UI       {[round(x, 1) for x in a['ui']]} median {a['median_ui']:.2f}")
    print(f"    headless {[round(x, 1) for x in a['headless']]} median {a['median_headless']:.2f}")
    print(f"    UI overhead {a['overhead_pct']:+.2f}% (target < 3%)")


if __name__ == "__main__":
    main()
