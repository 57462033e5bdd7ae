"""The app process's CPU while the Live screen streams (a script that prints figures, not a test;
issue 24).

On a CPU-only box the embedded vLLM engine's core is another process on the same cores, so every CPU
millisecond the app's process spends per second of streaming is taken from decoding (ui_overhead.py's
part (a)). This measures that millisecond without vLLM: the real app (App.run_test, headless, at each
--sizes) on the Live screen, fed by benchmarks/overhead_fake.py's SyntheticOverheadEngine at --rate
tok/s (one token per chunk, paced chunk by chunk, like a decoding model) for --seconds, through the
app's own path (orchestrator, run watcher, LiveMeter, the screen's 10 Hz tick). The script waits
with asyncio.sleep inside the windows, never Pilot.pause (which visits every widget and forces a
frame each call: the harness's work, not the app's).

Per size, three windows of the same length:
- headless: the same stream through EngineHost.submit, no app (what the source itself costs);
- idle: the app on the Live screen, nothing streaming;
- live: the app on the Live screen while the request streams.
For each: the process's CPU seconds per wall second (time.process_time) and per thread (the kernel's
utime + stime of each thread, /proc/self/task, 10 ms resolution), and the garbage collector's passes
and time (gc.callbacks). Then a fourth window, the live stream again under cProfile on the app's
thread (the event loop, where Textual and the tick run):
function calls per second of stream (cProfile's count: deterministic, not load-dependent) and the top
functions by own time.

Run: .venv/bin/python benchmarks/ui_cpu.py [--rate 60] [--seconds 10] [--sizes 120x40 80x24] [--top 20]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) * TICK_S
        name = names.get(int(tid))
        if name is None:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f"[{f.read().strip()}]"
        if name.startswith("tokentop-synthetic"):
            name = "engine host (source)"
        out[name] = out.get(name, 0.0) + cpu
    return out


class Window:
    """process_time, per-thread CPU and the garbage collector's passes over a stretch of wall clock."""

    def __enter__(self) -> Window:
        self.gc = [0, 0, 0]
        self.gc_s = 0.0
        self._gc_t = 0.0
        gc.callbacks.append(self._on_gc)
        self.wall0, self.cpu0, self.threads0 = time.perf_counter(), time.process_time(), thread_cpu()
        return self

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_t = time.perf_counter()
        else:
            self.gc[info["generation"]] += 1
            self.gc_s += time.perf_counter() - self._gc_t

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._on_gc)
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        after = thread_cpu()
        self.threads = {k: v - self.threads0.get(k, 0.0) for k, v in after.items()}

    def row(self) -> dict:
        return {"wall_s": self.wall, "cpu_per_s": self.cpu / self.wall,
                "gc": self.gc, "gc_ms_per_s": self.gc_s / self.wall * 1000,
                "threads_per_s": {k: v / self.wall for k, v in sorted(self.threads.items(), key=lambda kv: -kv[1])
                                  if v > 0}}


async def measure(size: tuple[int, int], rate: float, seconds: float, top: int, dump: str | None = None) -> dict:
    from overhead_fake import SyntheticOverheadEngine

    from data.store.database import Store
    from engine.engines.host import EngineHost
    from engine.orchestrator import Orchestrator
    from engine.types import GenerationRequest
    from tui.app import TokentopApp
    from tui.widgets.gauges import GaugePanel

    n = int(rate * seconds)
    out: dict = {"size": f"{size[0]}x{size[1]}", "rate": rate, "tokens": n}
    tmp = Path(tempfile.mkdtemp(prefix="tokentop-uicpu-"))
    store = Store(tmp / "u.duckdb")
    host = EngineHost(SyntheticOverheadEngine(rate_tok_s=rate, batch=1))  # paced chunk by chunk
    host.start().result(10)
    try:
        host.submit(GenerationRequest("x", max_tokens=int(rate))).result(60)  # warm-up
        with Window() as w:
            await asyncio.to_thread(lambda: host.submit(GenerationRequest("x", max_tokens=n)).result(seconds * 4))
        out["headless"] = w.row()

        app = TokentopApp(store=store, autostart=False, db_label="bench")
        async with app.run_test(size=size) as pilot:
            live = app.screen
            app.runs.attach(SimpleNamespace(orchestrator=Orchestrator(host)))

            async def stream(tokens: int) -> None:
                job = app.runs.start_interactive(GenerationRequest("x", max_tokens=tokens))
                live.ticker.resume()
                while job.running:  # asyncio.sleep, not pilot.pause: a pause waits on every widget
                    await asyncio.sleep(0.05)  # and forces a frame, work the real app does not do

            await stream(int(rate))  # warm-up: the first request's imports and first draws
            await pilot.pause(1.0)  # its tok/s now decays to 0 and the tick pauses
            with Window() as w:
                await asyncio.sleep(seconds)
            out["idle"] = w.row()
            with Window() as w:
                await stream(n)
            out["live"] = w.row()
            shown = live.query_one(GaugePanel).last.tokens
            await pilot.pause(1.0)
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            await stream(n)
            prof.disable()
            wall = time.perf_counter() - t0
            await pilot.pause(0.5)
        out["shown"] = shown
        if dump:
            prof.dump_stats(dump)
        stats = pstats.Stats(prof)
        rows = []
        for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            rows.append((tt, ct, nc, f"{Path(file).name}:{line}({func})"))
        rows.sort(reverse=True)
        busy = [r for r in rows if "poll" not in r[3] and "select" not in r[3]]  # the idle wait is not work
        out["profile"] = {"wall_s": wall, "calls_per_s": sum(r[2] for r in busy) / wall,
                          "cpu_ms_per_s": sum(r[0] for r in busy) / wall * 1000,
                          "top": [(name, tt / wall * 1000, ct / wall * 1000, nc / wall)
                                  for tt, ct, nc, name in busy[:top]]}
    finally:
        host.shutdown()
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def report(r: dict) -> None:
    print(f"== {r['size']}, {r['rate']:.0f} tok/s, {r['tokens']} tokens "
          f"(shown by the gauges: {r['shown']})")
    for key in ("headless", "idle", "live"):
        w = r[key]
        threads = ", ".join(f"{k} {v * 1000:.0f}" for k, v in list(w["threads_per_s"].items())[:5])
        print(f"  {key:<9} CPU {w['cpu_per_s'] * 1000:6.1f} ms/s over {w['wall_s']:.1f} s  (threads, ms/s: {threads})"
              f"  gc passes {'/'.join(map(str, w['gc']))} (gen 0/1/2), {w['gc_ms_per_s']:.1f} ms/s")
    p = r["profile"]
    print(f"  profiled live stream (app thread): {p['calls_per_s']:,.0f} function calls/s, "
          f"{p['cpu_ms_per_s']:.0f} ms/s own time under cProfile")
    print(f"    {'function':<60} {'own ms/s':>9} {'cum ms/s':>9} {'calls/s':>9}")
    for name, own, cum, calls in p["top"]:
        print(f"    {name[:60]:<60} {own:>9.2f} {cum:>9.2f} {calls:>9.1f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=float, default=60.0, help="tokens per second of the source")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each window")
    p.add_argument("--sizes", nargs="+", default=["120x40", "80x24"])
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--dump", help="write each size's cProfile stats to DUMP.<size>.prof (for pstats)")
    args = p.parse_args()
    for spec in args.sizes:
        w, h = (int(x) for x in spec.split("x"))
        report(asyncio.run(measure((w, h), args.rate, args.seconds, args.top,
                                   f"{args.dump}.{spec}.prof" if args.dump else None)))


if __name__ == "__main__":
    main()
